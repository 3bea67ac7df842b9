"""The answers the portal gives the card network: ISO 8583 response codes (field 39) with the
reason a person reads, and the merchant-category groups a card holder may block.

One table each; the network side, the pages and the monitoring rules all read them here.
"""

from __future__ import annotations

APPROVED = "00"
DO_NOT_HONOR = "05"  #: the wallet is frozen or closed
INVALID_TRANSACTION = "12"  #: not possible in this state (e.g. a reversal after capture)
INVALID_AMOUNT = "13"  #: zero, negative, too many digits, or a capture beyond the tolerance
NO_SUCH_CARD = "14"  #: no card has this number
NO_ORIGINAL = "25"  #: the authorization named is not known (yet: it may arrive later)
FORMAT_ERROR = "30"
CLOSED_ACCOUNT = "46"  #: the card was canceled or replaced
INSUFFICIENT_FUNDS = "51"
EXPIRED_CARD = "54"
NOT_PERMITTED = "57"  #: blocked merchant category or country
EXCEEDS_LIMIT = "61"  #: above the card's per-purchase, daily or monthly limit
RESTRICTED_CARD = "62"  #: the card is frozen
UNSUPPORTED_CURRENCY = "CU"  #: a currency the portal cannot settle
NO_RATE = "91"  #: no fresh exchange rate for the merchant's currency: try later
BAD_CVV = "N7"  #: the security code does not match (Visa's CVV2 code)

REASONS = {
    APPROVED: "Approved",
    DO_NOT_HONOR: "The wallet cannot pay now (frozen or closed)",
    INVALID_TRANSACTION: "Not possible for this transaction",
    INVALID_AMOUNT: "Invalid amount",
    NO_SUCH_CARD: "Unknown card number",
    NO_ORIGINAL: "The original authorization is not known",
    FORMAT_ERROR: "The message is malformed",
    CLOSED_ACCOUNT: "The card is canceled or replaced",
    INSUFFICIENT_FUNDS: "Not enough money in the wallet",
    EXPIRED_CARD: "The card has expired",
    NOT_PERMITTED: "Blocked by the card's controls (category or country)",
    EXCEEDS_LIMIT: "Above the card's spending limit",
    RESTRICTED_CARD: "The card is frozen",
    UNSUPPORTED_CURRENCY: "The merchant's currency is not supported",
    NO_RATE: "No current exchange rate for the merchant's currency",
    BAD_CVV: "Wrong security code",
}


def reason(code: str) -> str:
    return REASONS.get(code, "Declined")


#: Merchant-category groups (ISO 18245 codes) a card holder may block, by name.
MCC_GROUPS: dict[str, tuple[str, frozenset[str]]] = {
    "gambling": ("Gambling and betting", frozenset({"7995", "7800", "7801", "7802"})),
    "adult": ("Adult content and services", frozenset({"5967", "7273"})),
    "crypto": ("Crypto and quasi-cash", frozenset({"6051", "6050", "6012"})),
    "money_transfer": ("Money transfer", frozenset({"4829", "6540"})),
    "alcohol_tobacco": ("Alcohol and tobacco", frozenset({"5921", "5993"})),
    "travel": ("Airlines, hotels and car rental", frozenset({"4511", "7011", "7512", "4722"})),
    "digital_goods": ("Games and digital goods", frozenset({"5815", "5816", "5817", "5818"})),
}

#: Categories that monitoring treats as high-risk (gambling, quasi-cash and crypto, money transfer).
HIGH_RISK_MCCS = MCC_GROUPS["gambling"][1] | MCC_GROUPS["crypto"][1] | MCC_GROUPS["money_transfer"][1]


def group_of(mcc: str) -> str | None:
    for name, (_label, codes) in MCC_GROUPS.items():
        if mcc in codes:
            return name
    return None


#: Names of common merchant categories (ISO 18245), for the pages; others show their group or code.
MCC_NAMES = {
    "4111": "Transit", "4511": "Airlines", "4722": "Travel agencies", "4829": "Money transfer",
    "4899": "Streaming and subscriptions", "5411": "Groceries", "5812": "Restaurants and cafes",
    "5814": "Fast food", "5815": "Digital media", "5816": "Games", "5817": "Apps and software",
    "5818": "Digital goods", "5921": "Alcohol", "5942": "Books", "5993": "Tobacco", "5967": "Adult content",
    "6051": "Crypto and quasi-cash", "6012": "Financial institutions", "7011": "Hotels", "7512": "Car rental",
    "7995": "Gambling", "8220": "Colleges and universities", "8299": "Schools and courses",
}


def category(mcc: str) -> str:
    """The merchant category in words: its name, else its group's, else the code."""
    if mcc in MCC_NAMES:
        return MCC_NAMES[mcc]
    group = group_of(mcc)
    if group:
        return MCC_GROUPS[group][0]
    return f"Category {mcc}" if mcc else "Unknown category"
