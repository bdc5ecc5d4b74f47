"""Services an OCPP backend of any version uses: file transfer (firmware, diagnostics), the firmware
install, the diagnostics archive, certificates and signatures, and the security event log.

Nothing here speaks OCPP: message names, status values and timing rules stay in the backend
(station/backends/ocpp, ocpp16, ocpp201); these modules do the work and report through plain return values.
"""
