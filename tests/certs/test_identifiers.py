import pytest

from certs.identifiers import (
    id_card_check_character,
    is_valid_id_card_number,
    is_valid_uscc,
    mask_identifier,
    uscc_check_character,
)


@pytest.mark.parametrize("code", ["91110000600037341L", "9144030071526726XG", "91440300MA5H8REU3K"])
def test_real_social_credit_codes_are_valid(code):
    assert is_valid_uscc(code)


@pytest.mark.parametrize("first", ["A", "N", "Y"])
def test_codes_starting_with_a_letter_are_valid(first):
    # python-stdnum rejects these; GB 32100-2015 allows A, N and Y as registration authorities.
    body = first + "1110000600037341"
    assert is_valid_uscc(body + uscc_check_character(body))


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("91110000600037341M", "wrong check character"),
        ("91110000600037341", "17 characters"),
        ("91110000600037341LL", "19 characters"),
        ("01110000600037341L", "registration authority 0"),
        ("9111000060003734IL", "I is not in the character set"),
        ("911100006000373410".lower(), "lower case"),
        ("91A10000600037341L", "letter in the administrative division"),
    ],
)
def test_invalid_social_credit_codes_are_refused(code, why):
    assert not is_valid_uscc(code), why


@pytest.mark.parametrize("number", ["11010519491231002X", "360426199101010071"])
def test_real_id_card_numbers_are_valid(number):
    assert is_valid_id_card_number(number)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("110105194912310021", "wrong check digit"),
        ("11010519491231002x", "lower-case x"),
        ("11010519491331002X", "month 13"),
        ("11010519490230002X", "30 February"),
        ("11010517991231002X", "born before 1850"),
        ("1101051949123100", "16 digits"),
        ("01010519491231002X", "area code starting with 0"),
    ],
)
def test_invalid_id_card_numbers_are_refused(number, why):
    if why == "month 13" or why == "30 February" or why == "born before 1850":
        # Recompute the check digit so only the date is wrong.
        number = number[:17] + id_card_check_character(number[:17])
    assert not is_valid_id_card_number(number), why


def test_masking_keeps_only_the_ends():
    assert mask_identifier("11010519491231002X") == "1101************2X"
    assert mask_identifier("12345") == "*****"
