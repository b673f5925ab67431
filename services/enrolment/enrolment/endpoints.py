"""HTTP endpoints of the enrolment service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["enrolment"])
