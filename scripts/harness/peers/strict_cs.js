#!/usr/bin/env node
// An independent, strict OCPP 1.6-J or 2.0.1 central system for the station's tests.
//
// ocpp-rpc in strict mode validates every message in both directions against the
// official OCPP JSON schemas of the subprotocol in use (its bundled ocpp1_6.json and
// ocpp2_0_1.json, date-time formats included). This script serves
// on 127.0.0.1 (port from argv[2], 0 = any), answers the charge point like a
// well-behaved CSMS, and reports everything as JSON lines on stdout:
//   {"event":"listening","port":N}            once the server is up
//   {"event":"connected","identity":..}       a charge point connected
//   {"event":"call","method":..,"params":..}  a CALL from the charge point
//   {"event":"strictValidationFailure",..}    a message that breaks the schemas
//   {"event":"badMessage",..}                 a frame that is not OCPP-J
//   {"event":"result"|"error","id":..}        the answer to a command from stdin
// Commands arrive on stdin as JSON lines: {"id": 1, "method": "Reset", "params": {...}}.
// Harness commands (not OCPP): "__setServerCert" {cert, key} swaps the TLS server certificate,
// "__setTlsMax" {version} serves TLS up to that version only ("TLSv1.1"; null: 1.2 and later again),
// "__setPassword" {password} changes the expected Basic password, "__drop" closes the connection,
// "__setTags" {tags: {idTag: idTagInfo}} sets the idTagInfo of Authorize and StartTransaction per tag
// (2.0.1: {idToken: idTokenInfo} for Authorize and TransactionEvent; default {status: Accepted}),
// "__setBoot" {status, interval} answers BootNotification so from now on (default Accepted),
// "__outage" {seconds} closes the connection and refuses upgrades (HTTP 503) that long,
// "__answer" {method, result} answers that CALL of the charge point so from now on (null: default again;
// {"error": code} answers a CALLERROR with that code; {"delay": seconds} the usual answer, that much later).
//
// Frames, from the JSON object in argv[4]: {"frames": true} also reports every websocket message,
//   {"event":"frame","outbound":bool,"bytes":N,"type":2|3|4,"id":..,"method":..} (method for CALLs),
//   so a benchmark can count the bytes of a transaction at the central system.
//
// Versions, from the JSON object in argv[4]: {"protocols": ["ocpp2.0.1"]} (default ["ocpp1.6"]); the
// server takes the first of its protocols that the charge point offers.
//
// Security (OCPP 1.6 security whitepaper), from a JSON object in argv[4]:
//   {"password": "...",          // HTTP Basic required: user = identity, this password (profiles 1, 2)
//    "passwordHex": true,        // the password is the hex form of binary bytes
//    "tls": {"cert": f, "key": f, "ca": f,   // also serve wss:// on a second port (profiles 2, 3)
//            "requestCert": true}            // profile 3: a client certificate signed by ca is required
//    "plain": false}             // no ws:// port at all
// Each refused upgrade is reported: {"event":"authFailed","reason":..}; a TLS handshake that fails:
// {"event":"tlsError","error":..}. "listening" then carries "port" (ws://) and "tlsPort" (wss://).
'use strict';

const fs = require('fs');
const https = require('https');
const readline = require('readline');
const { RPCServer } = require('ocpp-rpc');

const port = Number(process.argv[2] || 0);
const heartbeat = Number(process.argv[3] || 300);
const security = JSON.parse(process.argv[4] || '{}');
let password = security.password === undefined ? null
    : Buffer.from(security.password, security.passwordHex ? 'hex' : 'utf8');
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const now = () => new Date().toISOString();

const server = new RPCServer({ protocols: security.protocols || ['ocpp1.6'], strictMode: true });
let client = null;
let txId = 500;
let tags = {};
let boot = { status: 'Accepted', interval: heartbeat };
let downUntil = 0;
const overrides = {};
const tagInfo = (idTag) => tags[idTag] || { status: 'Accepted' };
let tlsServer = null;

server.auth((accept, reject, handshake) => {
    if (Date.now() < downUntil) {
        out({ event: 'refused', reason: 'outage', identity: handshake.identity });
        return reject(503, 'Service Unavailable');
    }
    const sock = handshake.request.socket;
    const tls = Boolean(sock.encrypted);
    const peerCert = tls && sock.getPeerCertificate ? sock.getPeerCertificate() : null;
    const clientCert = peerCert && peerCert.subject ? peerCert.subject.CN || null : null;
    if (tls && security.tls && security.tls.requestCert && !sock.authorized) {
        out({ event: 'authFailed', identity: handshake.identity, reason: `client certificate: ${sock.authorizationError}` });
        return reject(401, 'client certificate required');
    }
    if (password !== null && !(tls && security.tls && security.tls.requestCert)) {
        if (!handshake.password || !password.equals(handshake.password)) {
            out({ event: 'authFailed', identity: handshake.identity,
                  reason: handshake.password ? 'wrong password' : 'no credentials' });
            return reject(401, 'Unauthorized');
        }
    }
    out({ event: 'upgrade', identity: handshake.identity, tls, clientCert,
          basic: handshake.password !== undefined });
    accept();
});

const answers = {
    BootNotification: () => ({ status: boot.status, currentTime: now(), interval: boot.interval }),
    Heartbeat: () => ({ currentTime: now() }),
    StatusNotification: () => ({}),
    MeterValues: () => ({}),
    FirmwareStatusNotification: () => ({}),
    DiagnosticsStatusNotification: () => ({}),
    Authorize: (p) => ({ idTagInfo: tagInfo(p.idTag) }),
    StartTransaction: (p) => ({ transactionId: ++txId, idTagInfo: tagInfo(p.idTag) }),
    StopTransaction: () => ({ idTagInfo: { status: 'Accepted' } }),
    DataTransfer: () => ({ status: 'Accepted' }),
    SecurityEventNotification: () => ({}),
    SignedFirmwareStatusNotification: () => ({}),
    LogStatusNotification: () => ({}),
    SignCertificate: () => ({ status: 'Accepted' }),
};
// OCPP 2.0.1: what a plain central system answers (idTokenInfo where an idToken is given).
const answers201 = {
    BootNotification: answers.BootNotification,
    Heartbeat: answers.Heartbeat,
    StatusNotification: () => ({}),
    Authorize: (p) => ({ idTokenInfo: tagInfo(p.idToken.idToken) }),
    TransactionEvent: (p) => (p.idToken ? { idTokenInfo: tagInfo(p.idToken.idToken) } : {}),
    MeterValues: () => ({}),
    NotifyReport: () => ({}),
    NotifyCustomerInformation: () => ({}),
    NotifyEvent: () => ({}),
    ReportChargingProfiles: () => ({}),
    ReservationStatusUpdate: () => ({}),
    SecurityEventNotification: () => ({}),
    FirmwareStatusNotification: () => ({}),
    LogStatusNotification: () => ({}),
    SignCertificate: () => ({ status: 'Accepted' }),
    DataTransfer: () => ({ status: 'UnknownVendorId' }),
};

server.on('client', (c) => {
    client = c;
    out({ event: 'connected', identity: c.identity, protocol: c.protocol });
    c.on('strictValidationFailure', (e) => out({
        event: 'strictValidationFailure', method: e.method, outbound: e.outbound, isCall: e.isCall,
        error: e.error ? String(e.error.message) : null, details: e.error ? e.error.details : null,
        params: e.params, result: e.result,
    }));
    if (security.frames) {
        c.on('message', ({ message, outbound }) => {
            const text = String(message);
            let m = [];
            try { m = JSON.parse(text); } catch (e) { /* reported as badMessage */ }
            out({ event: 'frame', outbound, bytes: Buffer.byteLength(text), type: m[0], id: m[1],
                method: m[0] === 2 ? m[2] : undefined });
        });
    }
    c.on('badMessage', (e) => out({ event: 'badMessage', error: String(e.error), message: String(e.buffer) }));
    c.on('close', (e) => out({ event: 'closed', code: e.code }));
    c.handle(async ({ method, params }) => {
        out({ event: 'call', method, params });
        if (overrides[method] && overrides[method].delay) {
            await new Promise((resolve) => setTimeout(resolve, 1000 * Number(overrides[method].delay)));
        } else if (overrides[method]) {
            const o = overrides[method];
            if (o.error) {
                const err = new Error(`answered with ${o.error} by the test`);
                err.rpcErrorCode = o.error;
                throw err;
            }
            return o;
        }
        const answer = (c.protocol === 'ocpp2.0.1' ? answers201 : answers)[method];
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
    if (cmd.method === '__setServerCert') {
        tlsServer.setSecureContext({ ...tlsOptions(), cert: fs.readFileSync(cmd.params.cert),
                                     key: fs.readFileSync(cmd.params.key) });
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (cmd.method === '__setTlsMax') {
        security.tls.maxVersion = cmd.params.version || null;
        tlsServer.setSecureContext(tlsOptions());
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (cmd.method === '__setTags') {
        tags = cmd.params.tags || {};
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (cmd.method === '__setBoot') {
        boot = { status: cmd.params.status, interval: cmd.params.interval ?? heartbeat };
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (cmd.method === '__answer') {
        if (cmd.params.result) overrides[cmd.params.method] = cmd.params.result;
        else delete overrides[cmd.params.method];
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (cmd.method === '__outage') {
        downUntil = Date.now() + 1000 * Number(cmd.params.seconds || 0);
        if (client) await client.close({ code: 1001, force: true });
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (cmd.method === '__setPassword') {
        password = Buffer.from(cmd.params.password, 'utf8');
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
        return;
    }
    if (!client) {
        out({ event: 'error', id: cmd.id, error: 'no charge point connected' });
        return;
    }
    if (cmd.method === '__drop') {
        await client.close({ code: 1000, force: true });
        out({ event: 'result', id: cmd.id, method: cmd.method, result: {} });
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

function tlsOptions() {
    const t = security.tls;
    return {
        cert: fs.readFileSync(t.cert), key: fs.readFileSync(t.key),
        ca: t.ca ? fs.readFileSync(t.ca) : undefined,
        requestCert: Boolean(t.requestCert), rejectUnauthorized: false,  // judged in auth: a clear 401
        // "maxVersion": "TLSv1.1" serves only a TLS older than OCPP allows (TC_A_06_CS), else TLS 1.2 or later
        minVersion: t.maxVersion ? 'TLSv1' : 'TLSv1.2', maxVersion: t.maxVersion || undefined,
        ciphers: t.maxVersion ? 'DEFAULT@SECLEVEL=0' : undefined,
    };
}

async function main() {
    const ready = { event: 'listening' };
    if (security.plain !== false) {
        const http = await server.listen(port, '127.0.0.1');
        ready.port = http.address().port;
    }
    if (security.tls) {
        tlsServer = https.createServer(tlsOptions(), (req, res) => { res.statusCode = 404; res.end(); });
        tlsServer.on('upgrade', server.handleUpgrade);
        tlsServer.on('tlsClientError', (err) => out({ event: 'tlsError', error: String(err.message || err) }));
        await new Promise((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
        ready.tlsPort = tlsServer.address().port;
    }
    out(ready);
}
main();
