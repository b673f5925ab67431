from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings

from .eid_schedule import EidRules
from .mother_schedule import MotherRules


class Settings(ServiceSettings):
    """Nested rules take `__` in their variable names: `PMTCT_EID__GRACE_DAYS=21`."""

    model_config = SettingsConfigDict(env_prefix="PMTCT_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "followup"

    eid: EidRules = EidRules()
    mother_viral_load: MotherRules = MotherRules()
    #: days without contact after an item became overdue before ClientLostToFollowUp
    lost_to_follow_up_days: int = Field(90, ge=1)

    #: how often the durable timers look for due, overdue and lost subjects
    timer_interval_s: float = Field(2.0, gt=0)
    timer_batch_size: int = Field(200, ge=1)
    #: a subject's timers wait this long after its last input, so that a backfill burst (a delivery
    #: dated weeks ago, then its results) is applied before anything is announced as overdue
    timer_settle_s: float = Field(15.0, ge=0)
