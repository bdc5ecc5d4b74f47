#!/usr/bin/env node
// An independent, strict OCPP 1.6-J central system for the station's tests.
//
// ocpp-rpc in strict mode validates every message in both directions against the
// official OCPP 1.6 JSON schemas (date-time formats included). This script serves
// on 127.0.0.1 (port from argv[2], 0 = any), answers the charge point like a
// well-behaved CSMS, and reports everything as JSON lines on stdout:
//   {"event":"listening","port":N}            once the server is up
//   {"event":"connected","identity":..}       a charge point connected
//   {"event":"call","method":..,"params":..}  a CALL from the charge point
//   {"event":"strictValidationFailure",..}    a message that breaks the schemas
//   {"event":"badMessage",..}                 a frame that is not OCPP-J
//   {"event":"result"|"error","id":..}        the answer to a command from stdin
// Commands arrive on stdin as JSON lines: {"id": 1, "method": "Reset", "params": {...}}.
'use strict';

const readline = require('readline');
const { RPCServer } = require('ocpp-rpc');

const port = Number(process.argv[2] || 0);
const heartbeat = Number(process.argv[3] || 300);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const now = () => new Date().toISOString();

const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true });
let client = null;
let txId = 500;

const answers = {
    BootNotification: () => ({ status: 'Accepted', currentTime: now(), interval: heartbeat }),
    Heartbeat: () => ({ currentTime: now() }),
    StatusNotification: () => ({}),
    MeterValues: () => ({}),
    FirmwareStatusNotification: () => ({}),
    DiagnosticsStatusNotification: () => ({}),
    Authorize: () => ({ idTagInfo: { status: 'Accepted' } }),
    StartTransaction: () => ({ transactionId: ++txId, idTagInfo: { status: 'Accepted' } }),
    StopTransaction: () => ({ idTagInfo: { status: 'Accepted' } }),
    DataTransfer: () => ({ status: 'Accepted' }),
};

server.on('client', (c) => {
    client = c;
    out({ event: 'connected', identity: c.identity, protocol: c.protocol });
    c.on('strictValidationFailure', (e) => out({
        event: 'strictValidationFailure', method: e.method, outbound: e.outbound, isCall: e.isCall,
        error: e.error ? String(e.error.message) : null, details: e.error ? e.error.details : null,
        params: e.params, result: e.result,
    }));
    c.on('badMessage', (e) => out({ event: 'badMessage', error: String(e.error), message: String(e.buffer) }));
    c.on('close', (e) => out({ event: 'closed', code: e.code }));
    c.handle(({ method, params }) => {
        out({ event: 'call', method, params });
        const answer = answers[method];
        if (!answer) {
            const err = new Error(`no handler for ${method}`);
            err.rpcErrorCode = 'NotImplemented';
            throw err;
        }
        return answer(params);
    });
});

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (e) {
        out({ event: 'error', id: null, error: `bad command: ${e.message}` });
        return;
    }
    if (!client) {
        out({ event: 'error', id: cmd.id, error: 'no charge point connected' });
        return;
    }
    try {
        const result = await client.call(cmd.method, cmd.params || {}, { callTimeoutMs: 10000 });
        out({ event: 'result', id: cmd.id, method: cmd.method, result });
    } catch (e) {
        out({ event: 'error', id: cmd.id, method: cmd.method, error: String(e.message), code: e.rpcErrorCode || null });
    }
});
rl.on('close', () => process.exit(0));

server.listen(port, '127.0.0.1').then((http) => out({ event: 'listening', port: http.address().port }));
