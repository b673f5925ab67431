"""Dev and operations tools of the PMTCT platform: the `pmtct` command, the local runner, the dev
issuer and the test harness. Not the runtime: services import `servicekit`, never this package."""
