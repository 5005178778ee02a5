import phonenumbers
import pytest

from zoho_whatsapp.rules.phone import UnusableNumber, mask_phone, to_whatsapp_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9820012345", "+919820012345"),
        ("09820012345", "+919820012345"),
        ("919820012345", "+919820012345"),
        ("+91 98200 12345", "+919820012345"),
        ("0091 98200 12345", "+919820012345"),
        ("(+91) 98200-12345", "+919820012345"),
        ("98200-12345", "+919820012345"),
        ("098200-12345", "+919820012345"),
        ("+91-9820012345", "+919820012345"),
        ("  +919820012345\n", "+919820012345"),
        ("+1-925-921-9201", "+19259219201"),  # US: FIXED_LINE_OR_MOBILE is sendable
        ("+44 7911 123456", "+447911123456"),
        ("00 1 925 921 9201", "+19259219201"),
    ],
)
def test_sendable_numbers_become_e164(raw: str, expected: str) -> None:
    assert to_whatsapp_number(raw) == expected


def test_9198765432_is_a_ten_digit_mobile_not_91_plus_eight_digits() -> None:
    # String rules ("starts with 91 -> strip it") would produce +9198765432, a wrong number.
    assert to_whatsapp_number("9198765432") == "+919198765432"
    assert to_whatsapp_number("+91 91987 65432") == "+919198765432"
    assert to_whatsapp_number("919198765432") == "+919198765432"


def test_us_organization_still_reads_0091_as_international() -> None:
    # The US international prefix is 011; "00" must not be read as a US national number.
    assert (
        to_whatsapp_number("0091 98200 12345", default_region="US") == "+919820012345"
    )
    assert to_whatsapp_number("+91 98200 12345", default_region="US") == "+919820012345"


def test_default_region_applies_to_national_numbers_and_is_case_insensitive() -> None:
    assert to_whatsapp_number("9820012345", default_region="in") == "+919820012345"
    assert to_whatsapp_number("(925) 921-9201", default_region="US") == "+19259219201"
    # Without a plus sign a US number in an Indian organization is not guessed at.
    with pytest.raises(UnusableNumber) as info:
        to_whatsapp_number("1-925-921-9201", default_region="IN")
    assert info.value.reason == "invalid_mobile"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no_mobile"),
        ("", "no_mobile"),
        ("   ", "no_mobile"),
        ("N/A", "no_mobile"),
        ("n/a", "no_mobile"),
        ("NA", "no_mobile"),
        ("-", "no_mobile"),
        ("--", "no_mobile"),
        ("12345", "invalid_mobile"),
        ("abc", "invalid_mobile"),
        ("+91", "invalid_mobile"),
        ("98200 12345 / 98200 54321", "invalid_mobile"),
        ("982001234", "invalid_mobile"),  # nine digits
        ("022 2345 6789", "not_mobile"),  # Mumbai landline
        ("080-41234567", "not_mobile"),  # Bengaluru landline
        ("1800 180 1234", "not_mobile"),  # toll-free
        ("+1 800 555 0199", "not_mobile"),  # US toll-free
    ],
)
def test_unusable_numbers_carry_a_reason(raw: str | None, reason: str) -> None:
    with pytest.raises(UnusableNumber) as info:
        to_whatsapp_number(raw)
    assert info.value.reason == reason
    assert info.value.raw == raw
    assert isinstance(info.value, ValueError)


def test_unknown_region_without_plus_is_invalid_not_a_crash() -> None:
    with pytest.raises(UnusableNumber) as info:
        to_whatsapp_number("9820012345", default_region="")
    assert info.value.reason == "invalid_mobile"


def test_result_round_trips_through_phonenumbers() -> None:
    number = phonenumbers.parse(to_whatsapp_number("(+91) 98200-12345"), None)
    assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+919820012345", "+91 98XXXXXX45"),
        ("+19259219201", "+1 92XXXXXX01"),
        ("+447911123456", "+44 79XXXXXX56"),
    ],
)
def test_mask_phone(e164: str, masked: str) -> None:
    assert mask_phone(e164) == masked


@pytest.mark.parametrize("junk", ["garbage", "", "+91", "12"])
def test_mask_phone_never_raises_or_leaks(junk: str) -> None:
    masked = mask_phone(junk)
    assert isinstance(masked, str)
    assert not any(ch.isdigit() for ch in masked)
