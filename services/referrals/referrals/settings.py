from pydantic import Field

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "referrals"

    #: days a new HIV diagnosis may go without an ART start before an ART-initiation referral opens
    art_initiation_wait_days: float = Field(default=7, ge=0)
    #: days an automatic referral is given, by need (EID sample collection uses the test window's end)
    art_initiation_due_days: int = Field(default=7, ge=0)
    infant_art_due_days: int = Field(default=7, ge=0)
    tracing_due_days: int = Field(default=14, ge=0)
    #: how often the timers look for ART waits that are over and referrals past their due-by date
    timer_interval_s: float = Field(default=5, gt=0)
    timer_batch_size: int = Field(default=200, ge=1)
    feed_max_page: int = Field(default=1000, ge=1)
