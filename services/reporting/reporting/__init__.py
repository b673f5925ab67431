"""Reporting service: Programme indicators, DHIS2 export and the dashboard."""
