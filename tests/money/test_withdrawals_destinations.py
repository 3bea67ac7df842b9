"""Withdrawal destinations: every validator with valid and invalid samples, most of them the
test vectors published with each specification (ISO 13616 examples, BIP 173 / BIP 350, EIP-55)."""

from __future__ import annotations

import pytest

from portal.money.earnings import destinations as d
from portal.money.earnings.models import WithdrawalMethod

BANK, MOBILE, CRYPTO = WithdrawalMethod.BANK_ACCOUNT, WithdrawalMethod.MOBILE_MONEY, WithdrawalMethod.CRYPTO_ADDRESS


# -- The method rule ------------------------------------------------------------------------------


def test_the_method_rule_lives_in_one_table():
    assert d.methods_for("usd") == (BANK, MOBILE)
    assert d.methods_for("BTC") == (CRYPTO,) and d.methods_for("ETH") == (CRYPTO,)
    assert d.methods_for("AZR") == ()
    assert d.withdrawable_currencies() == ["USD", "BTC", "ETH"]


@pytest.mark.parametrize(("method", "code", "message"), [
    (CRYPTO, "USD", "US dollar withdrawals are paid to a bank account (iban) or mobile money"),
    (BANK, "BTC", "Bitcoin withdrawals are paid to a crypto address"),
    (MOBILE, "ETH", "Ether withdrawals are paid to a crypto address"),
    (BANK, "AZR", "convert it to USD first"),
    ("cheque", "USD", "Choose how you want to be paid"),
    ("", "USD", "Choose how you want to be paid"),
])
def test_a_method_that_does_not_fit_the_currency_is_refused(method, code, message):
    with pytest.raises(d.DomainError) as caught:
        d.check_method(method, code)
    assert message in caught.value.message


def test_an_unknown_currency_is_refused_by_name():
    with pytest.raises(d.DomainError) as caught:
        d.validate(BANK, "XYZ", "DE89370400440532013000")
    assert "Unknown currency" in caught.value.message and caught.value.field == "currency"


# -- IBAN -----------------------------------------------------------------------------------------

# Published example IBANs (ISO 13616 / the SWIFT IBAN registry and national examples).
VALID_IBANS = {
    "DE89 3704 0044 0532 0130 00": "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32": "GB82WEST12345698765432",
    "gb82west12345698765432": "GB82WEST12345698765432",
    "NL91ABNA0417164300": "NL91ABNA0417164300",
    "FR14 2004 1010 0505 0001 3M02 606": "FR1420041010050500013M02606",
    "BE71 0961 2345 6769": "BE71096123456769",
    "CH93 0076 2011 6238 5295 7": "CH9300762011623852957",
    "GR16 0110 1250 0000 0001 2300 695": "GR1601101250000000012300695",
    # Belgian, with a bank code (539) that python-stdnum's list of Belgian banks does not have.
    "BE68 5390 0754 7034": "BE68539007547034",
    "ES91 2100 0418 4502 0005 1332": "ES9121000418450200051332",
    "NO93 8601 1117 947": "NO9386011117947",
    "ME25 5050 0001 2345 6789 51": "ME25505000012345678951",
}


@pytest.mark.parametrize(("raw", "compact"), VALID_IBANS.items())
def test_published_ibans_are_accepted_and_stored_compact(raw, compact):
    destination = d.validate(BANK, "USD", raw)
    assert destination.value == compact
    assert destination.masked == f"{compact[:2]} •••• {compact[-4:]}"
    assert destination.display.replace(" ", "") == compact


@pytest.mark.parametrize(("raw", "message"), [
    ("DE89 3704 0044 0532 0130 01", "check digits do not match"),  # one digit changed
    ("GB82 WEST 1234 5698 7654 23", "check digits do not match"),  # two digits swapped
    ("DE89 3704 0044 0532 0130 0", "from DE has 22 characters; this one has 21"),
    ("NL91ABNA04171643001", "from NL has 18 characters"),
    ("XX89 3704 0044 0532 0130 00", "XX is not a country that uses IBANs"),
    ("1234 5678", "two-letter country code"),
    ("DE89-3704/0044", "only letters and digits"),
    ("", "Enter the IBAN"),
])
def test_wrong_ibans_are_refused_with_the_reason(raw, message):
    with pytest.raises(d.InvalidDestination) as caught:
        d.validate(BANK, "USD", raw)
    assert message in caught.value.message
    assert caught.value.field == "destination"


def test_an_iban_with_a_valid_checksum_but_a_wrong_national_structure_is_refused():
    # GB needs four letters of bank code; these are digits. The check digits are made to match,
    # so only the structure check can catch it.
    from stdnum import iban

    body = "0000" + "12345698765432"
    check = iban.calc_check_digits("GB00" + body)
    with pytest.raises(d.InvalidDestination) as caught:
        d.validate_iban(f"GB{check}{body}")
    assert "not how an IBAN from GB is written" in caught.value.message


def _with_iban_check_digits(country: str, bban: str) -> str:
    """An IBAN whose mod-97 check digits are right for ``bban``, so only a later check can fail."""
    from stdnum import iban

    return f"{country}{iban.calc_check_digits(country + '00' + bban)}{bban}"


@pytest.mark.parametrize("bban", [
    "539007547035",  # Belgium: the last two digits are the account's mod 97 (34, not 35)
    "21000418460200051332",  # Spain: the CCC's two control digits (45, not 46)
    "86011117948",  # Norway: the account number's mod 11 digit (7, not 8)
    "505000012345678952",  # Montenegro: the BBAN's own mod 97 (51, not 52)
])
def test_an_iban_failing_its_national_check_digits_is_refused(bban):
    country = {12: "BE", 20: "ES", 11: "NO", 18: "ME"}[len(bban)]
    with pytest.raises(d.InvalidDestination) as caught:
        d.validate_iban(_with_iban_check_digits(country, bban))
    assert f"fails {country}'s own check digits" in caught.value.message


def test_a_bank_missing_from_the_bank_list_is_not_an_error():
    from stdnum.be import iban as be_iban

    assert not be_iban.info("BE68539007547034")  # the bundled list really lacks bank 539
    assert d.validate(BANK, "USD", "BE68539007547034").value == "BE68539007547034"
    # ... while its national check still applies
    with pytest.raises(d.InvalidDestination):
        d.validate_iban(_with_iban_check_digits("BE", "539007547035"))


# -- Mobile money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "e164"), [
    ("+254 712 345 678", "+254712345678"),  # Kenya, Safaricom range
    ("+44 7400 123456", "+447400123456"),  # United Kingdom mobile
    ("+233-24-123-4567", "+233241234567"),  # Ghana mobile
    ("+1 (201) 555-0123", "+12015550123"),  # US numbers may be fixed or mobile
])
def test_international_mobile_numbers_are_accepted_in_e164(raw, e164):
    destination = d.validate(MOBILE, "USD", raw)
    assert destination.value == e164
    assert destination.masked == f"+ •••• {e164[-4:]}"


@pytest.mark.parametrize(("raw", "message"), [
    ("0712 345 678", "international form"),  # national form: which country?
    ("+254 12", "does not exist"),
    ("+999 123 456 789", "not a phone number"),  # no such country code
    ("+44 20 7946 0958", "not a mobile number"),  # London landline
    ("+254 712 345 67x", "only digits"),
])
def test_wrong_or_non_mobile_numbers_are_refused(raw, message):
    with pytest.raises(d.InvalidDestination) as caught:
        d.validate(MOBILE, "USD", raw)
    assert message in caught.value.message


# -- Bitcoin --------------------------------------------------------------------------------------

# BIP 350's valid mainnet segwit addresses (v0 Bech32; v1, v2 and v16 Bech32m) and well-known
# Base58Check addresses: the genesis block's P2PKH and the Bitcoin wiki's P2SH example.
VALID_BTC = {
    "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4": "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y":
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
    "BC1SW50QGDZ25J": "bc1sw50qgdz25j",
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs": "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0":
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa": "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy": "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
}


@pytest.mark.parametrize(("raw", "stored"), VALID_BTC.items())
def test_valid_bitcoin_addresses_are_accepted(raw, stored):
    destination = d.validate(CRYPTO, "BTC", raw)
    assert destination.value == stored
    assert destination.masked.endswith(stored[-4:])


# BIP 350's invalid segwit addresses on mainnet (each with its reason), plus altered Base58Check.
INVALID_BTC = [
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # Bech32 instead of Bech32m
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # Bech32 instead of Bech32m
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # Bech32m instead of Bech32
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid character in checksum
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # invalid witness version
    "bc1pw5dgrnzv",  # program of 1 byte
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",  # 41 bytes
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # invalid program length for version 0
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # zero padding of more than 4 bits
    "bc1gmk9yu",  # empty data section
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3T4",  # mixed case
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",  # one character changed
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb",  # Base58Check checksum broken
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLY",
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7Divf0a",  # 0 is not Base58
]


def _base58check(payload: bytes) -> str:
    import hashlib

    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    value, out = int.from_bytes(raw, "big"), ""
    while value:
        value, digit = divmod(value, 58)
        out = d._B58_ALPHABET[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def test_base58check_round_trip_and_payload_rules():
    genesis = _base58check(bytes.fromhex("0062e907b15cbf27d5425399ebf6f0fb50ebb88f18"))
    assert genesis == "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    assert d.validate_btc_address(genesis) == genesis
    # A correct checksum over a payload that is no address: 22 bytes, or an unknown version byte.
    for payload in (bytes(22), b"\x30" + bytes(20)):
        with pytest.raises(d.InvalidDestination):
            d.validate_btc_address(_base58check(payload))


@pytest.mark.parametrize("raw", INVALID_BTC)
def test_invalid_bitcoin_addresses_are_refused(raw):
    with pytest.raises(d.InvalidDestination):
        d.validate(CRYPTO, "BTC", raw)


@pytest.mark.parametrize("raw", [
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",  # BIP 350 testnet vector
    "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",  # testnet P2PKH
])
def test_testnet_addresses_are_refused_by_name(raw):
    with pytest.raises(d.InvalidDestination) as caught:
        d.validate(CRYPTO, "BTC", raw)
    assert "testnet" in caught.value.message


@pytest.mark.parametrize("vector", [
    "A1LQFN3A", "a1lqfn3a", "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v", "?1v759aa",
])
def test_bip350_bech32m_checksum_vectors(vector):
    _, _, const = d.bech32_decode(vector)
    assert const == d.BECH32M_CONST


@pytest.mark.parametrize("vector", [
    "A12UEL5L", "a12uel5l", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w", "?1ezyfcl",
])
def test_bip173_bech32_checksum_vectors(vector):
    _, _, const = d.bech32_decode(vector)
    assert const == d.BECH32_CONST


@pytest.mark.parametrize("vector", [
    "\x201xj0phk", "\x7f1g6xzxy", "\x801vctc34",
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m", "1qyrz8wqd2c9m", "y1b0jsk6g", "lt1igcx5c0", "in1muywd", "mm1crxm3i", "au1s5cgom",
    "M1VUXWEZ", "16plkw9", "1p2gdwpf",
])
def test_bip350_invalid_bech32m_strings(vector):
    with pytest.raises(ValueError):
        d.bech32_decode(vector)


def test_segwit_program_decodes_to_the_published_script():
    version, program = d.segwit_decode("bc", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0")
    assert version == 1
    assert program.hex() == "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


# -- Ether ----------------------------------------------------------------------------------------

# EIP-55's test vectors: all caps, all lower, and the normal mixed-case checksummed form.
EIP55_CHECKSUMMED = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_CHECKSUMMED)
def test_eip55_vectors_checksum_to_themselves(address):
    assert d.eip55_checksum(address) == address
    assert d.eip55_checksum(address.lower()) == address
    assert d.validate(CRYPTO, "ETH", address).value == address


def test_keccak_is_ethereums_not_nist_sha3():
    assert d.keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@pytest.mark.parametrize("address", ["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
                                     "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"])
def test_single_case_addresses_carry_no_checksum_and_are_stored_checksummed(address):
    assert d.validate(CRYPTO, "ETH", address).value == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.mark.parametrize(("address", "message"), [
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "EIP-55 checksum"),  # last letter's case flipped
    ("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "EIP-55 checksum"),
    ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "starts with 0x"),
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA", "40 hexadecimal digits"),
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAgg", "40 hexadecimal digits"),
    ("0x0000000000000000000000000000000000000000", "zero address"),
])
def test_wrong_ethereum_addresses_are_refused(address, message):
    with pytest.raises(d.InvalidDestination) as caught:
        d.validate(CRYPTO, "ETH", address)
    assert message in caught.value.message


def test_a_bitcoin_address_is_no_ethereum_address_and_the_other_way_round():
    with pytest.raises(d.InvalidDestination):
        d.validate(CRYPTO, "ETH", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa")
    with pytest.raises(d.InvalidDestination):
        d.validate(CRYPTO, "BTC", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")


def test_masking_shows_only_the_last_four_characters_of_the_secret_part():
    assert d.mask(CRYPTO, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed") == "0x•••• eAed"
    assert d.mask(CRYPTO, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4") == "bc1•••• f3t4"
    assert d.mask(CRYPTO, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa") == "•••• vfNa"
