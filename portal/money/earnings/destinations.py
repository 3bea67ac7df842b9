"""Where a withdrawal is paid: the methods each currency may leave by, the validation of each
kind of destination, and how a destination is shown masked.

One rule decides which method fits which currency (``METHODS_BY_CURRENCY``):

- US dollars leave to a bank account (an IBAN) or to a mobile money number;
- bitcoin and ether leave to an address on their own network, checked for that network;
- AZR, the portal's own token, has no outside network or bank to be paid to: a student converts
  it to USD first (the exchange gives the rate and records it), then withdraws the dollars.

The checks, each against its published specification:

- IBAN (ISO 13616): the country's length and BBAN structure and the ISO 7064 mod 97-10 check
  digits, from python-stdnum's IBAN registry data, and the national check digits inside the
  BBAN where python-stdnum has them; never whether the bank is on a list of known banks.
- Mobile money: an international number in E.164 form (``+`` and the country code), valid for
  its country and able to be a mobile line, with Google's libphonenumber metadata.
- Bitcoin (mainnet only): Base58Check P2PKH (``1...``) and P2SH (``3...``) addresses; native
  segwit addresses in Bech32 (BIP 173, witness version 0) or Bech32m (BIP 350, versions 1 to 16),
  with the witness program rules of BIP 141 and the mixed-case rule.
- Ether: ``0x`` and 40 hexadecimal digits; an address written in mixed case must carry a correct
  EIP-55 checksum (Keccak-256 of the lower-case hex), all-lower or all-upper carries none.

The checksum algorithms for Bitcoin and EIP-55 are written here from the specifications (no
maintained Python package covers Bech32m with BIP 350's version rules); the tests run the
specifications' own test vectors.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import phonenumbers
from Crypto.Hash import keccak
from stdnum import iban as stdnum_iban
from stdnum import numdb
from stdnum.exceptions import InvalidComponent, ValidationError

from portal.errors import DomainError
from portal.money.currency import currency
from portal.money.earnings.models import WithdrawalMethod


class InvalidDestination(DomainError):
    status_code = 422
    field = "destination"


class MethodNotAllowed(DomainError):
    status_code = 422
    field = "method"


#: The one rule: which methods a withdrawal in each currency may use (none: not withdrawable).
METHODS_BY_CURRENCY: dict[str, tuple[WithdrawalMethod, ...]] = {
    "USD": (WithdrawalMethod.BANK_ACCOUNT, WithdrawalMethod.MOBILE_MONEY),
    "BTC": (WithdrawalMethod.CRYPTO_ADDRESS,),
    "ETH": (WithdrawalMethod.CRYPTO_ADDRESS,),
    "AZR": (),
}

#: Why a currency has no method, said where a student would try.
NOT_WITHDRAWABLE = {
    "AZR": "AZR stays inside the portal: convert it to USD first, then withdraw the dollars.",
}

def withdrawable_currencies() -> list[str]:
    return [code for code, methods in METHODS_BY_CURRENCY.items() if methods]


def methods_for(code: str) -> tuple[WithdrawalMethod, ...]:
    return METHODS_BY_CURRENCY.get(currency(code).code, ())


def check_method(method: str | WithdrawalMethod | None, code: str) -> WithdrawalMethod:
    """The method, if a withdrawal in ``code`` may use it; otherwise a message saying which may."""
    unit = currency(code)
    try:
        chosen = WithdrawalMethod(method or "")
    except ValueError:
        raise MethodNotAllowed("Choose how you want to be paid.") from None
    allowed = METHODS_BY_CURRENCY.get(unit.code, ())
    if not allowed:
        raise MethodNotAllowed(NOT_WITHDRAWABLE.get(unit.code, f"{unit.code} cannot be withdrawn."),
                               field="currency")
    if chosen not in allowed:
        names = " or ".join(m.label.lower() for m in allowed)
        raise MethodNotAllowed(f"{unit.name} withdrawals are paid to a {names}, not to a {chosen.label.lower()}.")
    return chosen


@dataclass(frozen=True)
class Destination:
    method: WithdrawalMethod
    #: The canonical form that is stored (encrypted): compact IBAN, E.164 number, the address.
    value: str
    #: What pages show: the last four characters, with a harmless prefix (country, network).
    masked: str
    #: The full value laid out for reading (IBAN in groups of four), for the admin's review.
    display: str


def validate(method: str | WithdrawalMethod, code: str, raw: str | None) -> Destination:
    """Check ``raw`` as a destination for ``method`` in ``code``; returns its canonical form."""
    chosen = check_method(method, code)
    text = (raw or "").strip()
    if not text:
        raise InvalidDestination({
            WithdrawalMethod.BANK_ACCOUNT: "Enter the IBAN of the account to pay.",
            WithdrawalMethod.MOBILE_MONEY: "Enter the mobile number, starting with + and the country code.",
            WithdrawalMethod.CRYPTO_ADDRESS: f"Enter the {currency(code).name.lower()} address to pay.",
        }[chosen])
    if len(text) > 120:
        raise InvalidDestination("That is far too long for a destination.")
    if chosen == WithdrawalMethod.BANK_ACCOUNT:
        value = validate_iban(text)
        return Destination(chosen, value, mask(chosen, value), stdnum_iban.format(value))
    if chosen == WithdrawalMethod.MOBILE_MONEY:
        value = validate_mobile(text)
        return Destination(chosen, value, mask(chosen, value), _phone_display(value))
    value = validate_btc_address(text) if currency(code).code == "BTC" else validate_eth_address(text)
    return Destination(chosen, value, mask(chosen, value), value)


def mask(method: WithdrawalMethod, value: str) -> str:
    """The last four characters, after a prefix that identifies nothing (an IBAN's country, the
    ``+`` of a number, the network prefix of an address)."""
    tail = value[-4:]
    if method == WithdrawalMethod.BANK_ACCOUNT:
        return f"{value[:2]} •••• {tail}"
    if method == WithdrawalMethod.MOBILE_MONEY:
        return f"+ •••• {tail}"
    prefix = "0x" if value.lower().startswith("0x") else ("bc1" if value.lower().startswith("bc1") else "")
    return f"{prefix}•••• {tail}"


def display(method: WithdrawalMethod, value: str) -> str:
    if method == WithdrawalMethod.BANK_ACCOUNT:
        return stdnum_iban.format(value)
    if method == WithdrawalMethod.MOBILE_MONEY:
        return _phone_display(value)
    return value


# -- IBAN -----------------------------------------------------------------------------------------

_IBAN_DB = numdb.get("iban")
_BBAN_PART = re.compile(r"(\d+)!([nac])")


def _iban_length(country: str) -> int | None:
    """The full IBAN length for ``country`` from the registry's BBAN structure, or None."""
    info = _IBAN_DB.info(country)
    structure = info[0][1].get("bban") if info and info[0][1] else None
    if not structure:
        return None
    return 4 + sum(int(count) for count, _ in _BBAN_PART.findall(structure))


def validate_iban(raw: str) -> str:
    compact = re.sub(r"[\s.-]", "", raw).upper()
    if not re.fullmatch(r"[A-Z0-9]+", compact):
        raise InvalidDestination("An IBAN has only letters and digits (spaces are fine).")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", compact):
        raise InvalidDestination("An IBAN starts with a two-letter country code and two check digits, "
                                 "like DE89 3704 0044 0532 0130 00.")
    expected = _iban_length(compact[:2])
    if expected is None:
        raise InvalidDestination(f"{compact[:2]} is not a country that uses IBANs.")
    if len(compact) != expected:
        raise InvalidDestination(f"An IBAN from {compact[:2]} has {expected} characters; this one has "
                                 f"{len(compact)}.")
    try:
        # Structure for the country and the ISO 7064 mod 97-10 check digits; the national part next.
        stdnum_iban.validate(compact, check_country=False)
    except ValidationError as exc:
        if "checksum" in type(exc).__name__.lower():
            raise InvalidDestination("The IBAN's check digits do not match: look for a mistyped "
                                     "character.") from None
        raise InvalidDestination(f"That is not how an IBAN from {compact[:2]} is written: check the bank "
                                 "and account part.") from None
    _check_national(compact)
    return compact


def _check_national(compact: str) -> None:
    """The country's own check digits inside the BBAN, where python-stdnum knows them (Belgium,
    Spain, Montenegro, Norway).

    Only a failed check (a wrong check digit, a malformed national number) refuses the IBAN.
    Some of these checks also look the bank code up in a bundled registry of banks and report a
    miss as an unknown component: such a list is never complete (banks open, merge, are missing
    from it), and a bank that is absent says nothing about whether the number was typed right.
    The structure and mod-97 checks have already passed by then, so that outcome is accepted."""
    module = stdnum_iban._get_cc_module(compact[:2])
    if module is None:
        return
    try:
        module.validate(compact)
    except InvalidComponent:
        return  # the bank registry did not list the bank code: not an error (see above)
    except ValidationError:
        raise InvalidDestination(f"The account number inside this IBAN fails {compact[:2]}'s own check "
                                 "digits: look for a mistyped digit.") from None


# -- Mobile money ---------------------------------------------------------------------------------

_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def validate_mobile(raw: str) -> str:
    text = raw.strip()
    if not text.startswith("+"):
        raise InvalidDestination("Write the number in international form: + and the country code first, "
                                 "like +254 712 345 678.")
    if re.search(r"[^\d\s+().-]", text):
        raise InvalidDestination("A phone number has only digits, spaces and the leading +.")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidDestination("That is not a phone number: + and the country code, then the number.") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidDestination("That number does not exist in the country its code names: check the digits.")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise InvalidDestination("That is not a mobile number: mobile money is paid to a mobile line.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_display(e164: str) -> str:
    return phonenumbers.format_number(phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# -- Bitcoin: Base58Check (P2PKH, P2SH) -----------------------------------------------------------

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {ch: i for i, ch in enumerate(_B58_ALPHABET)}
#: Mainnet version bytes: pay to public key hash, pay to script hash.
_P2PKH, _P2SH = 0x00, 0x05
#: Testnet and regtest version bytes, refused by name.
_TESTNET_VERSIONS = {0x6F, 0xC4}


def base58_decode(text: str) -> bytes:
    """Base58 as Bitcoin writes it: a big number in base 58, each leading ``1`` a zero byte."""
    value = 0
    for ch in text:
        index = _B58_INDEX.get(ch)
        if index is None:
            raise ValueError(f"{ch!r} is not a Base58 character")
        value = value * 58 + index
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def base58check_decode(text: str) -> bytes:
    """The payload of a Base58Check string (version byte and data), checksum verified: the last
    four bytes are the first four of SHA-256(SHA-256(payload))."""
    raw = base58_decode(text)
    if len(raw) < 5:
        raise ValueError("too short")
    payload, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        raise ValueError("checksum mismatch")
    return payload


# -- Bitcoin: Bech32 and Bech32m (BIP 173, BIP 350) ----------------------------------------------

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {ch: i for i, ch in enumerate(_BECH32_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
BECH32_CONST = 1
BECH32M_CONST = 0x2BC830A3


def bech32_polymod(values: list[int]) -> int:
    """BIP 173's BCH checksum over GF(32)."""
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_decode(text: str) -> tuple[str, list[int], int]:
    """``(hrp, data without checksum, encoding constant)`` of a Bech32 or Bech32m string, or
    ValueError. The constant says which of the two the checksum matched."""
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise ValueError("character out of range")
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    if len(text) > 90:
        raise ValueError("too long")
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise ValueError("separator misplaced")
    hrp, data_part = text[:pos], text[pos + 1:]
    if any(c not in _BECH32_INDEX for c in data_part):
        raise ValueError("invalid data character")
    data = [_BECH32_INDEX[c] for c in data_part]
    const = bech32_polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        raise ValueError("checksum mismatch")
    return hrp, data[:-6], const


def _convert_bits(data: list[int], from_bits: int, to_bits: int) -> bytes:
    """Regroup 5-bit groups into bytes; the leftover padding must be under 5 bits and zero."""
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        raise ValueError("invalid padding")
    return bytes(out)


def segwit_decode(hrp: str, text: str) -> tuple[int, bytes]:
    """``(witness version, program)`` of a segwit address for ``hrp``, by BIP 173 and BIP 350:
    version 0 uses Bech32 with a 20- or 32-byte program, versions 1 to 16 use Bech32m with 2 to 40
    bytes."""
    found_hrp, data, const = bech32_decode(text)
    if found_hrp != hrp:
        raise ValueError("wrong human-readable part")
    if not data:
        raise ValueError("empty data")
    version = data[0]
    if version > 16:
        raise ValueError("invalid witness version")
    program = _convert_bits(data[1:], 5, 8)
    if not 2 <= len(program) <= 40:
        raise ValueError("invalid program length")
    if version == 0 and len(program) not in (20, 32):
        raise ValueError("invalid program length for version 0")
    if (version == 0) != (const == BECH32_CONST):
        raise ValueError("wrong checksum variant for the witness version")
    return version, program


def validate_btc_address(raw: str) -> str:
    text = raw.strip()
    lowered = text.lower()
    if lowered.startswith(("tb1", "bcrt1")) or text[:1] in ("m", "n", "2"):
        raise InvalidDestination("That is a Bitcoin testnet address; withdrawals are paid on the main network.")
    if lowered.startswith("bc1"):
        try:
            segwit_decode("bc", text)
        except ValueError:
            raise InvalidDestination("That is not a valid Bitcoin address: the bc1 address's checksum or "
                                     "format does not match. Copy it again from your wallet.") from None
        return lowered
    if text[:1] in ("1", "3"):
        try:
            payload = base58check_decode(text)
        except ValueError:
            raise InvalidDestination("That is not a valid Bitcoin address: its checksum does not match. "
                                     "Copy it again from your wallet.") from None
        if len(payload) != 21 or payload[0] not in (_P2PKH, _P2SH):
            if payload and payload[0] in _TESTNET_VERSIONS:
                raise InvalidDestination("That is a Bitcoin testnet address; withdrawals are paid on the main "
                                         "network.")
            raise InvalidDestination("That is not a Bitcoin address.")
        return text
    raise InvalidDestination("A Bitcoin address starts with 1, 3 or bc1.")


# -- Ether: EIP-55 --------------------------------------------------------------------------------

_ETH_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def eip55_checksum(address: str) -> str:
    """The EIP-55 form of ``address``: each hex letter upper case where the matching nibble of
    Keccak-256(lower-case hex, as ASCII) is 8 or more."""
    hex_part = address[2:].lower()
    digest = keccak256(hex_part.encode("ascii")).hex()
    return "0x" + "".join(ch.upper() if ch.isalpha() and int(digest[i], 16) >= 8 else ch
                          for i, ch in enumerate(hex_part))


def validate_eth_address(raw: str) -> str:
    text = raw.strip()
    if text[:2] == "0X":
        text = "0x" + text[2:]
    if not text.startswith("0x"):
        raise InvalidDestination("An Ethereum address starts with 0x.")
    if not _ETH_ADDRESS.fullmatch(text):
        raise InvalidDestination("An Ethereum address is 0x followed by 40 hexadecimal digits (0-9, a-f).")
    hex_part = text[2:]
    checksummed = eip55_checksum(text)
    if hex_part != hex_part.lower() and hex_part != hex_part.upper() and text != checksummed:
        raise InvalidDestination("The address's capital letters do not match its EIP-55 checksum: it was "
                                 "mistyped. Copy it again from your wallet.")
    if int(hex_part, 16) == 0:
        raise InvalidDestination("That is the zero address: anything sent to it is lost.")
    return checksummed
