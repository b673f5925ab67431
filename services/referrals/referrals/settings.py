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
    #: a partner / family testing referral of a contact an index client named is due this many days on
    index_testing_due_days: int = Field(default=30, ge=0)
    #: an index contact who tested positive is referred for ART, due this many days after the test
    index_art_due_days: int = Field(default=7, ge=0)
    #: a mother overdue an HIV test; enhanced adherence support after an unsuppressed viral load
    hiv_testing_due_days: int = Field(default=7, ge=0)
    adherence_support_due_days: int = Field(default=14, ge=0)
    #: how often the timers look for ART waits that are over and referrals past their due-by date
    timer_interval_s: float = Field(default=5, gt=0)
    timer_batch_size: int = Field(default=200, ge=1)
    feed_max_page: int = Field(default=1000, ge=1)

    #: push delivery (referrals/push.py): how often the deliverer looks for due subscriptions, the
    #: first retry's delay (doubled at each failure, up to the maximum), the horizon after which a
    #: subscription whose deliveries keep failing is paused, and the failures in a row that pause it
    push_poll_interval_s: float = Field(default=1, gt=0)
    push_timeout_s: float = Field(default=10, gt=0)
    push_backoff_initial_s: float = Field(default=5, gt=0)
    push_backoff_max_s: float = Field(default=900, gt=0)
    push_retry_horizon_s: float = Field(default=86400, gt=0)
    push_pause_after_failures: int = Field(default=30, ge=1)
    #: subscriptions delivered at once by one replica (each in its own task: a slow one holds only itself)
    push_concurrency: int = Field(default=32, ge=1)
    push_batch_size: int = Field(default=100, ge=1)
    #: http:// webhook URLs (else https only): for local development and tests
    push_allow_http: bool = False
