"""HTTP endpoints of the reporting service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["reporting"])
