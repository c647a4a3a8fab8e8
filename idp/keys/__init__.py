"""Pages of this area: a person's own security keys, and the step-up to level 3."""
