"""The twelve texts of the seed paper's experiment (section 5.1), in one place.

The ``reproduce`` command, the docs and the tests all use them; the seed paper probed BERT's
first MLP layer on each category's four texts.
"""

from __future__ import annotations

__all__ = ["PAPER_TEXTS"]

PAPER_TEXTS: dict[str, list[str]] = {
    "language": [
        "The cat sat on the mat.",
        "She enjoys learning new languages.",
        "Die Katze sitzt auf der Matte.",
        "Sy hou van om nuwe tale te leer.",
    ],
    "math_and_logic": [
        "What is 25 plus 17? The answer is 42.",
        "A triangle with sides 3, 4, and 5 has a right angle. The area is 6.",
        "If Alice has 10 apples and gives 4 away, she has 6 apples left.",
        "The statement 'All men are mortal' is true. Socrates is a man.",
    ],
    "miscellaneous": [
        "Water boils at 100 degrees Celsius under standard conditions.",
        "The sunset painted the sky in hues of orange and red.",
        "I love sunny days because they make me feel energetic and happy.",
        "Harry Potter defeated Voldemort in the Battle of Hogwarts.",
    ],
}
"""Category -> the paper's four texts of that category (section 5.1 of the seed paper).

Examples:
    >>> sum(len(texts) for texts in PAPER_TEXTS.values())
    12
"""
