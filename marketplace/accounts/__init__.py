"""Accounts: a buyer organisation signs itself up, confirming its e-mail address (service)."""
