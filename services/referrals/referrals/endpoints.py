"""HTTP endpoints of the referrals service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["referrals"])
