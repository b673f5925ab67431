from pathlib import Path

from pydantic import Field

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "reporting"
    #: DHIS2 data element / category option combo / org unit mapping; the packaged default when unset
    dhis2_mapping_path: Path | None = Field(default=None, alias="PMTCT_DHIS2_MAPPING")
    #: months shown in the dashboard's trend charts
    dashboard_trend_months: int = Field(default=12, ge=2, le=36)
    #: mark the dashboard's token cookie Secure (set behind HTTPS)
    dashboard_cookie_secure: bool = False
    #: `pmtct replay reporting`: facts and event ids held in memory before they are copied in (more:
    #: fewer, larger copies and more memory)
    replay_stage_rows: int = Field(default=50_000, ge=1)
