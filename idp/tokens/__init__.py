"""Pages of this area: an organisation's hardware token inventory, a person's
own tokens, and the activation of a replacement token by someone who cannot
sign in because their token is gone."""
