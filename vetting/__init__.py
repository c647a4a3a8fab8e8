"""Applications, checks, clearance decisions, enrolment, renewal and lapse."""
