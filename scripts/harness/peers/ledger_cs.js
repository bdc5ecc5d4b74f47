#!/usr/bin/env node
// A strict OCPP 1.6-J or 2.0.1 central system that keeps a billing ledger: the judge of the OCPP kill test
// (bench/torture.py --backend ocpp|ocpp201, tests/test_torture.py; driven by ../torture_ocpp.py).
//
// ocpp-rpc in strict mode validates every message in both directions against the official
// OCPP 1.6 JSON schemas (date-time formats included); a message that breaks them is answered by
// ocpp-rpc itself and recorded here. The business logic is a plain central system: transaction
// ids are counted up from 1000; Authorize and StartTransaction accept the tags given in the
// options and answer Invalid for any other; StopTransaction and MeterValues are answered
// (OCPP 1.6 gives a central system no way to refuse them) and recorded with whether their
// transactionId is one this central system handed out.
//
//   node ledger_cs.js PORT LEDGER_FILE '{"tags": ["D64FC93B", ...], "heartbeat": 30, "protocols": ["ocpp2.0.1"]}'
//
// OCPP 2.0.1 (protocols ["ocpp2.0.1"]; the schemas are ocpp-rpc's bundled 2.0.1 ones): Authorize answers
// the idTokenInfo of the tag set; every TransactionEvent is answered (with the idTokenInfo when it carries an
// idToken) and recorded with "txId" (transactionInfo.transactionId), "repeat" (that transactionId and seqNo
// came before: a resend) and "same" (a resend identical to the first); stdout says {"event":"start","txId":..}
// as an eventType Started arrives.
//
// Every event is appended to LEDGER_FILE as one JSON line, synchronously, before the answer
// leaves, so the ledger never misses a transaction the charge point was told about:
//   {"ev":"connect","conn":N,"identity":..}        a websocket was accepted
//   {"ev":"close","conn":N,"code":..,"by":"cs"|"cp"} it ended (by = who ended it)
//   {"ev":"refused","reason":"outage"}             an upgrade refused during an outage
//   {"ev":"call","conn":N,"seq":S,"method":..,"params":..,"txId"?:..,"known"?:..,"status"?:..}
//   {"ev":"schema","conn":N,...}                   a strictValidationFailure (either direction)
//   {"ev":"bad","conn":N,...}                      a frame that is not OCPP-J
// "seq" counts calls in order of arrival. For StartTransaction "txId" is the id answered and
// "status" the idTagInfo status; for StopTransaction and MeterValues "known" says whether the
// transactionId was handed out here, for StopTransaction "repeat" that it was stopped before.
//
// Commands on stdin, one JSON object a line (answered on stdout as {"ok": <cmd>}):
//   {"cmd":"outage","seconds":S}   close the charge point's websocket now and refuse upgrades
//                                  (HTTP 503) for S seconds
//   {"cmd":"lose_start"}           the next StartTransaction opens its transaction (recorded with
//                                  "lost": true) but the connection is closed instead of answering:
//                                  what the charge point sees when the answer is lost in flight
//   {"cmd":"misbehave","method":M,"mode":X,"times":N,"delayMs":D}
//                                  the next N calls of M (StartTransaction, StopTransaction or
//                                  MeterValues; N absent: all of them) are answered wrongly, as
//                                  central systems in the field do. The call is processed (a
//                                  StartTransaction opens its transaction, a StopTransaction stops
//                                  it) except with "callerror", and recorded with "answer": X:
//                                    late       the right answer, D ms late
//                                    silent     no answer at all
//                                    garbage    a frame that is not JSON
//                                    wrong_id   a CALLRESULT with another message id
//                                    no_tx      StartTransaction.conf without transactionId
//                                    string_tx  StartTransaction.conf with transactionId as a string
//                                    callerror  CALLERROR InternalError, not processed
//                                  ({"cmd":"misbehave","method":M} alone: answer M well again)
//   {"cmd":"open"}                 answered {"ok":"open","open":[txId...]}: transactions started
//                                  here and not stopped
// Options (argv[4]) may also hold "startLatencyMs": every StartTransaction opens its transaction at
// once and is answered that much later (a central system's own latency).
// stdout also carries {"event":"listening","port":N} once the server is up, and
// {"event":"start","txId":N} as each StartTransaction arrives, before it is answered (so a test
// can aim a kill at a StartTransaction in flight).
'use strict';

const fs = require('fs');
const readline = require('readline');
const { RPCServer, NOREPLY } = require('ocpp-rpc');

const port = Number(process.argv[2] || 0);
const ledgerFile = process.argv[3];
const options = JSON.parse(process.argv[4] || '{}');
const tags = new Set((options.tags || []).map((t) => t.toUpperCase()));
const heartbeat = Number(options.heartbeat || 300);

const ledger = fs.openSync(ledgerFile, 'a');
const record = (obj) => fs.writeSync(ledger, JSON.stringify(obj) + '\n');
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const now = () => new Date().toISOString();

const server = new RPCServer({ protocols: options.protocols || ['ocpp1.6'], strictMode: true });
let conns = 0;
let seq = 0;
let nextTx = 1000;
let downUntil = 0;
let loseStart = false;
const clients = new Map(); // conn -> client
const transactions = new Map(); // txId -> {stopped: bool}
const events201 = new Map(); // "txId/seqNo" -> the first TransactionEvent's params, as JSON
const misbehaviour = new Map(); // method -> {mode, times (null: always), delayMs}
const startLatencyMs = Number(options.startLatencyMs || 0);
const later = (ms, value) => new Promise((resolve) => setTimeout(() => resolve(value), ms));

// The misbehaviour for this call of `method`, if any (counts it down).
function misbehaving(method) {
    const m = misbehaviour.get(method);
    if (!m) return null;
    if (m.times !== null && --m.times <= 0) misbehaviour.delete(method);
    return m;
}

// Answer `answer` to the CALL `messageId` the way `m` says (the call itself is processed already).
function answerBadly(client, m, messageId, answer) {
    switch (m.mode) {
    case 'late':
        return later(Number(m.delayMs || 0), answer);
    case 'silent':
        return NOREPLY;
    case 'garbage':
        client.sendRaw('this is not JSON {');
        return NOREPLY;
    case 'wrong_id':
        client.sendRaw(JSON.stringify([3, `${messageId}-not`, answer]));
        return NOREPLY;
    case 'no_tx': {
        const { transactionId, ...rest } = answer;
        client.sendRaw(JSON.stringify([3, messageId, rest]));
        return NOREPLY;
    }
    case 'string_tx':
        client.sendRaw(JSON.stringify([3, messageId, { ...answer, transactionId: String(answer.transactionId) }]));
        return NOREPLY;
    default:
        throw new Error(`unknown misbehaviour ${m.mode}`);
    }
}

const status = (idTag) => (tags.has(String(idTag).toUpperCase()) ? 'Accepted' : 'Invalid');

server.auth((accept, reject, handshake) => {
    if (Date.now() < downUntil) {
        record({ ev: 'refused', reason: 'outage', identity: handshake.identity });
        return reject(503, 'Service Unavailable');
    }
    accept();
});

server.on('client', (client) => {
    const conn = ++conns;
    clients.set(conn, client);
    let closedByCs = false;
    client.closeByCs = () => { closedByCs = true; return client.close({ code: 1001, force: true }); };
    record({ ev: 'connect', conn, identity: client.identity, at: now() });
    client.on('strictValidationFailure', (e) => record({
        ev: 'schema', conn, method: e.method, outbound: e.outbound, isCall: e.isCall,
        error: e.error ? String(e.error.message) : null, details: e.error ? e.error.details : null,
        params: e.params, result: e.result,
    }));
    client.on('badMessage', (e) => record({ ev: 'bad', conn, error: String(e.error), message: String(e.buffer) }));
    client.on('close', (e) => {
        clients.delete(conn);
        record({ ev: 'close', conn, code: e.code, by: closedByCs ? 'cs' : 'cp', at: now() });
    });
    client.handle(({ method, params, messageId }) => {
        const entry = { ev: 'call', conn, seq: ++seq, method, params, at: now() };
        const bad = misbehaving(method);
        if (bad) entry.answer = bad.mode;
        if (bad && bad.mode === 'callerror') {
            entry.refused = true;
            record(entry);
            const err = new Error('test central system: not processed');
            err.rpcErrorCode = 'InternalError';
            throw err;
        }
        let answer;
        switch (method) {
        case 'BootNotification':
            answer = { status: 'Accepted', currentTime: now(), interval: heartbeat };
            break;
        case 'NotifyReport':
        case 'NotifyCustomerInformation':
        case 'ReportChargingProfiles':
        case 'ReservationStatusUpdate':
            answer = {};
            break;
        case 'Heartbeat':
            answer = { currentTime: now() };
            break;
        case 'Authorize':
            if (params.idToken) {  // 2.0.1
                entry.status = status(params.idToken.idToken);
                answer = { idTokenInfo: { status: entry.status } };
                break;
            }
            entry.status = status(params.idTag);
            answer = { idTagInfo: { status: entry.status } };
            break;
        case 'TransactionEvent': {
            entry.txId = params.transactionInfo.transactionId;
            const key = `${entry.txId}/${params.seqNo}`;
            const text = JSON.stringify(params);
            entry.repeat = events201.has(key);
            entry.same = entry.repeat && events201.get(key) === text;
            if (!entry.repeat) events201.set(key, text);
            if (params.eventType === 'Started' && !entry.repeat) say({ event: 'start', txId: entry.txId });
            answer = params.idToken ? { idTokenInfo: { status: status(params.idToken.idToken) } } : {};
            break;
        }
        case 'StartTransaction': {
            entry.txId = ++nextTx;
            entry.status = status(params.idTag);
            transactions.set(entry.txId, { stopped: false });
            say({ event: 'start', txId: entry.txId });
            if (loseStart) {
                loseStart = false;
                entry.lost = true;
                record(entry);
                client.closeByCs();
                return new Promise(() => {});  // never answered
            }
            answer = { transactionId: entry.txId, idTagInfo: { status: entry.status } };
            break;
        }
        case 'StopTransaction': {
            const tx = transactions.get(params.transactionId);
            entry.known = tx !== undefined;
            entry.repeat = Boolean(tx && tx.stopped);
            if (tx) tx.stopped = true;
            answer = params.idTag ? { idTagInfo: { status: status(params.idTag) } } : {};
            break;
        }
        case 'MeterValues':
            if (params.transactionId !== undefined) entry.known = transactions.has(params.transactionId);
            answer = {};
            break;
        case 'DataTransfer':
            answer = { status: 'UnknownVendorId' };
            break;
        case 'SignCertificate':
            answer = { status: 'Accepted' };
            break;
        default:  // StatusNotification, SecurityEventNotification, firmware and diagnostics notices
            answer = {};
        }
        record(entry);
        if (bad) return answerBadly(client, bad, messageId, answer);
        if (method === 'StartTransaction' && startLatencyMs > 0) return later(startLatencyMs, answer);
        return answer;
    });
});

function command(line) {
    try {
        return JSON.parse(line);
    } catch (e) {
        return { cmd: null, error: e.message };
    }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
    const cmd = command(line);
    if (cmd.cmd === 'outage') {
        downUntil = Date.now() + 1000 * Number(cmd.seconds || 0);
        await Promise.all([...clients.values()].map((c) => c.closeByCs()));
        say({ ok: 'outage' });
    } else if (cmd.cmd === 'lose_start') {
        loseStart = true;
        say({ ok: 'lose_start' });
    } else if (cmd.cmd === 'misbehave') {
        if (cmd.mode) {
            misbehaviour.set(cmd.method, { mode: cmd.mode, times: cmd.times || null, delayMs: cmd.delayMs || 0 });
        } else {
            misbehaviour.delete(cmd.method);
        }
        say({ ok: 'misbehave' });
    } else if (cmd.cmd === 'open') {
        const open = [...transactions.entries()].filter(([, t]) => !t.stopped).map(([id]) => id);
        say({ ok: 'open', open });
    } else {
        say({ error: cmd.error ? `bad command: ${cmd.error}` : `unknown command ${cmd.cmd}` });
    }
});
rl.on('close', () => process.exit(0));

(async () => {
    const http = await server.listen(port, '127.0.0.1');
    say({ event: 'listening', port: http.address().port });
})();
