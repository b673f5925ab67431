"""HTTP endpoints of the followup service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["followup"])
