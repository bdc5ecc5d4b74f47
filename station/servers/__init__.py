"""Central-system programs, apart from the station's backends (their clients):

    mcsp/        the MCSP/1.0 reference server (`station mcsp-server`)
    evcs2018.py  an emulation of the deployed 2018 mmetering serial listener (`runevcs`)
"""
