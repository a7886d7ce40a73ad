"""Card-number arithmetic shared by validation (ledger) and log redaction (platform)."""


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check: every second digit from the right is doubled."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0
