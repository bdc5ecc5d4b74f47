"""The 2018 mmetering serial dialect (`backend.kind = "evcs-serial"`): a protocol of its own, not MCSP."""
