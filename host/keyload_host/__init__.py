"""keyload host: personalize terminal security modules (EI) from a master card (AS) over PC/SC."""
