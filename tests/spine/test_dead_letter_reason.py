"""A dead letter's reason (`dlq_error`, on Kafka) names what went wrong without the values it was
given: a database error's message carries the statement's parameters, a validation error's the
input — either could be personal data a producer put where it should not be."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError

from servicekit.guard import safe_reason

NAME = "Nomsa Dlamini"


class DriverError(Exception):
    sqlstate = "22P02"


class Visit(BaseModel):
    visit_number: int
    client_ref: str


def database_error() -> DBAPIError:
    try:
        raise DriverError(f'invalid input syntax for type integer: "{NAME}"')
    except DriverError as driver:
        return DBAPIError("INSERT INTO visit VALUES ($1)", (NAME,), driver)


def validation_error() -> ValidationError:
    try:
        Visit.model_validate({"visit_number": NAME, "client_ref": 7})
    except ValidationError as invalid:
        return invalid
    raise AssertionError("not refused")


def wrapped(inner: BaseException) -> Exception:
    try:
        raise ValueError("the record is invalid by the contract") from inner
    except ValueError as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "says"),
    [
        pytest.param(database_error(), "DBAPIError (SQLSTATE 22P02 DriverError)", id="database error: type and state"),
        pytest.param(
            validation_error(),
            "2 validation error(s) for Visit: visit_number: Input should be a valid integer, unable to parse"
            " string as an integer; client_ref: Input should be a valid string",
            id="validation error: field and rule",
        ),
        pytest.param(wrapped(validation_error()), "validation error(s) for Visit", id="a validation error as cause"),
        pytest.param(ValueError("nested too deep (over 64 levels)"), "ValueError: nested too deep", id="our own words"),
    ],
)
def test_a_dead_letters_reason_names_the_problem_without_the_values(error: BaseException, says: str) -> None:
    reason = safe_reason(error)
    assert says in reason
    assert NAME not in reason and "Nomsa" not in reason
