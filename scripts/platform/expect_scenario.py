"""The outcome of tests/scenarios/one_session.toml (tap, consume exactly 1500 Wh, tap) as
`station simulate --json` printed it in a root: one delivered session of 1500 Wh, Available."""

import json
import sys

out = json.load(open(sys.argv[1]))
sessions = out.get("sessions", [])
problems = []
if out.get("state") != "Available":
    problems.append(f"state {out.get('state')}")
if len(sessions) != 1 or sessions[0].get("energy_wh") != 1500 or not sessions[0].get("delivered"):
    problems.append(f"sessions {sessions}")
if out.get("undelivered") != 0:
    problems.append(f"{out.get('undelivered')} undelivered")
if problems:
    sys.exit("scenario: " + "; ".join(problems))
print(f"ok   scenario: one session of {sessions[0]['energy_wh']} Wh, delivered, station Available")
