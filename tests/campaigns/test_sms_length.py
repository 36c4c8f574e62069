"""How many SMS a text takes: GSM-7 160 / 153 per part, UCS-2 (Cyrillic) 70 / 67, checked
against the GSM 03.38 codec."""

from __future__ import annotations

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
from hypothesis import given
from hypothesis import strategies as st

from hub.campaigns.render import GSM7_BASIC, GSM7_EXTENSION, sms_length

GSM_TEXT = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=400)


def test_a_latin_text_fills_160_characters_before_it_splits_into_153_character_parts():
    assert sms_length("a" * 160).parts == 1
    assert sms_length("a" * 161).parts == 2
    assert sms_length("a" * 306).parts == 2
    assert sms_length("a" * 307).parts == 3


def test_cyrillic_halves_the_part_length():
    one = sms_length("Новые цены с 1 января: скидка 5% на всю плитку. Ждём вас! Салон Керамика")
    assert one.encoding == "UCS-2"
    assert sms_length("я" * 70).parts == 1
    assert sms_length("я" * 71).parts == 2
    assert sms_length("я" * 134).parts == 2
    assert sms_length("я" * 135).parts == 3


def test_one_cyrillic_letter_makes_a_latin_text_ucs2():
    assert sms_length("a" * 100 + "ж").parts == 2


def test_the_extension_characters_count_twice():
    assert sms_length("{" * 80).characters == 160
    assert sms_length("{" * 80).parts == 1
    assert sms_length("€" * 81).parts == 2


def test_an_emoji_counts_as_two_ucs2_units():
    assert sms_length("🙂" * 35).parts == 1
    assert sms_length("🙂" * 36).parts == 2


@given(GSM_TEXT)
def test_gsm7_length_is_what_the_gsm0338_codec_encodes(text):
    encoded = text.encode("gsm03.38")
    length = sms_length(text)
    assert length.encoding == "GSM-7"
    assert length.characters == len(encoded)


@given(st.text(max_size=200))
def test_a_text_the_gsm_alphabet_cannot_carry_goes_as_ucs2(text):
    try:
        # The codec also maps a few look-alikes (NUL, a lower-case ç) it cannot give back:
        # only a text that survives the round trip travels as GSM-7 unchanged.
        carried = text.encode("gsm03.38").decode("gsm03.38") == text
    except (UnicodeEncodeError, UnicodeDecodeError):
        carried = False
    assert sms_length(text).encoding == ("GSM-7" if carried else "UCS-2")
