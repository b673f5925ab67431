from pathlib import Path

from pydantic import Field, SecretStr

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "reporting"
    #: DHIS2 mapping of the MER data set (data elements, category option combos, attribute option
    #: combo, org units); the packaged default when unset
    dhis2_mapping_path: Path | None = Field(default=None, alias="PMTCT_DHIS2_MAPPING")
    #: DHIS2 mapping of the programme data set; the packaged default when unset
    dhis2_programme_mapping_path: Path | None = Field(default=None, alias="PMTCT_DHIS2_PROGRAMME_MAPPING")
    #: the DHIS2 instance pushes go to (its base URL, e.g. https://dhis2.example.org); no push without it
    dhis2_url: str | None = None
    #: basic authentication, or a personal access token (sent as `Authorization: ApiToken ...`)
    dhis2_username: str | None = None
    dhis2_password: SecretStr | None = None
    dhis2_token: SecretStr | None = None
    #: tries of one push on a transient failure (connection error, 502/503/504), with doubling waits
    dhis2_retry_attempts: int = Field(default=5, ge=1, le=20)
    dhis2_retry_initial_s: float = Field(default=2.0, ge=0)
    dhis2_timeout_s: float = Field(default=60.0, gt=0)
    #: the scheduled push: on this day of each month, the month before is pushed (0 turns it off)
    dhis2_push_day: int = Field(default=5, ge=0, le=28)
    #: how often the scheduled push looks whether there is something to send
    dhis2_schedule_interval_s: float = Field(default=3600.0, gt=0)
    #: the data sets the scheduled push sends
    dhis2_push_data_sets: tuple[str, ...] = ("mer",)
    #: months shown in the dashboard's trend charts
    dashboard_trend_months: int = Field(default=12, ge=2, le=36)
    #: mark the dashboard's token cookie Secure (set behind HTTPS)
    dashboard_cookie_secure: bool = False
    #: `pmtct replay reporting`: facts and event ids held in memory before they are copied in (more:
    #: fewer, larger copies and more memory)
    replay_stage_rows: int = Field(default=50_000, ge=1)
    #: programme figures: a client "reached" has at least this many interactions in the period
    programme_reached_contacts: int = Field(default=2, ge=1)
