// The npm em-ocpp-chargepoint-simulator as a peer for bench/b_ocpp_peer.py (batch mode script).
// Environment: BENCH_URL (central system base URL), BENCH_CONNECTIONS, BENCH_MESSAGES, BENCH_PAUSE_MS.
// Opens N connections (BootNotification on each), pauses (the bench reads CPU and RSS),
// sends M MeterValues CALLs on connection 0 one after the other, each awaiting its answer,
// pauses again, closes.
const base = process.env.BENCH_URL;
const n = parseInt(process.env.BENCH_CONNECTIONS || "1", 10);
const m = parseInt(process.env.BENCH_MESSAGES || "100", 10);
const pause = parseInt(process.env.BENCH_PAUSE_MS || "2000", 10);
const cps = [];
for (let i = 0; i < n; i++) {
  const id = "EM" + i;
  const cp = await connect(base + "/" + id, id);
  await cp.sendBootnotification({chargePointVendor: "bench", chargePointModel: "em-sim"});
  cps.push(cp);
}
console.log("BOOTED " + n);
await cps[0].sleep(pause);
for (let i = 0; i < m; i++) {
  await cps[0].meterValues({connectorId: 1, meterValue: [{timestamp: new Date().toISOString(),
    sampledValue: [{value: String(1000 + i), measurand: "Energy.Active.Import.Register", unit: "Wh"}]}]});
}
console.log("SENT " + m);
await cps[0].sleep(pause);
for (const cp of cps) cp.close();
console.log("CLOSED");
process.exit(0);
