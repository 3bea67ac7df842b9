"""Matching quality: labelled name pairs scored at the configured threshold.

True matches differ the way one person's name differs between a KYC form and a list: spelling,
accents, order, punctuation, honorifics, transliteration from Cyrillic, Arabic, Greek and Chinese
script, a dropped second surname. Near misses are different people whose names differ by little:
a gendered ending, one given name, a longer surname. Precision and recall are printed (``-s``)
and both must stay above 0.9.
"""

from __future__ import annotations

import pytest

from portal.compliance.aml.matching import name_similarity

SAME_PERSON = [
    ("José Luis Rodríguez Zapatero", "Jose Luis Rodriguez-Zapatero"),
    ("Сергей Иванов", "Sergei Ivanov"),
    ("Mohammed bin Salman", "Muhammad ibn Salman"),
    ("Zhang Wei", "Wei Zhang"),
    ("Ivanov Sergei", "Sergey Ivanov"),
    ("张伟", "Zhang Wei"),
    ("Aleksandr Petrov", "Alexander Petrov"),
    ("Yusuf Al-Rashid", "Youssef Al Rashid"),
    ("Hussein Abdel Karim", "Husain Abdul Karim"),
    ("Dr. Ana María Pérez", "Ana Maria Perez"),
    ("Abdulrahman Khalil", "Abdul Rahman Khalil"),
    ("Jose Luis Rodriguez", "José Luis Rodríguez Zapatero"),
    ("Ekaterina Smirnova", "Yekaterina Smirnova"),
    ("Dmitry Volkov", "Dmitri Volkov"),
    ("Nikolai Kuznetsov", "Nikolay Kuznetsov"),
    ("محمد بن سلمان", "Mohammed bin Salman"),
    ("François Lefèvre", "Francois Lefevre"),
    ("Müller Jürgen", "Juergen Mueller"),
    ("Rodrigez Zapatero", "Rodriguez Zapatero"),
    ("Li Xiaoming", "Xiaoming Li"),
    ("Olga Kuznetsova", "Кузнецова Ольга"),
    ("Catherine Dubois", "Katherine Dubois"),
    ("Mr John Smith", "SMITH, John"),
    ("Chen Jing", "陈静"),
    ("Νικόλαος Παπαδόπουλος", "Nikolaos Papadopoulos"),
    ("Zoltán Kerekes", "Zoltan Kerekes"),
    ("Ştefan Drăgulescu", "Stefan Dragulescu"),
    ("Omar Farouk", "Omar Faruk"),
    ("Sheikh Tariq Aziz", "Tariq Aziz"),
    ("Seán O'Brien", "Sean OBrien"),
    ("Vladimir Vladimirovich Sokolov", "Sokolov Vladimir"),
    ("Katarzyna Wiśniewska", "Katarzyna Wisniewska"),
    ("Jean-Pierre Dupont", "Jean Pierre Dupont"),
    ("Mikhail Gorbunov", "Михаил Горбунов"),
    ("Nguyễn Văn An", "Nguyen Van An"),
    ("Ahmad Shah Massoud", "Ahmed Shah Masood"),
    ("Yevgeny Prigozhev", "Evgeniy Prigozhev"),
    ("Osama Hamdan", "Usama Hamdan"),
    ("王小明", "Wang Xiaoming"),
]

DIFFERENT_PEOPLE = [
    ("Maria Garcia", "Mario Garcia"),
    ("John Smith", "Jon Smithers"),
    ("Ivan Petrov", "Ivana Petrova"),
    ("Zhang Wei", "Zhang Wen"),
    ("Sergei Ivanov", "Sergei Ivanovich Popov"),
    ("Anna Kowalski", "Hanna Kowalska"),
    ("Daniel Fischer", "Daniela Fischer"),
    ("Omar Haddad", "Amer Haddad"),
    ("Li Wei", "Li Na"),
    ("Pedro Sanchez", "Pablo Sanchez"),
    ("John Smith", "John"),
    ("Ahmed Hassan", "Ahmed Hassani Karimi"),
    ("Michael Brown", "Michelle Brown"),
    ("Chen Jing", "Chen Ying"),
    ("Olga Kuznetsova", "Olga Kuznetsov"),
    ("Mohammed Salman", "Mahmoud Salman"),
    ("Peter Novak", "Petra Novak"),
    ("Ali Reza", "Alireza Tehrani"),
    ("Carlos Mendez", "Carla Mendez"),
    ("Yuri Orlov", "Yuri Orlova"),
    ("Kim Min-jun", "Kim Min-ji"),
    ("Fatima Khan", "Fatima Khanum"),
    ("Robert Jones", "Roberta Jones"),
    ("Hassan Ali", "Hassan Alawi"),
    ("Adam Nowak", "Adrian Nowak"),
]


@pytest.fixture
def threshold(app):
    return float(app.config["AML_MATCH_THRESHOLD"])


def test_enough_labelled_pairs():
    assert len(SAME_PERSON) + len(DIFFERENT_PEOPLE) >= 30
    assert len(SAME_PERSON) >= 15 and len(DIFFERENT_PEOPLE) >= 15


def test_precision_and_recall_at_the_configured_threshold(threshold):
    scored = [(a, b, name_similarity(a, b), True) for a, b in SAME_PERSON]
    scored += [(a, b, name_similarity(a, b), False) for a, b in DIFFERENT_PEOPLE]
    true_pos = sum(1 for *_, score, same in scored if same and score >= threshold)
    false_pos = sum(1 for *_, score, same in scored if not same and score >= threshold)
    false_neg = sum(1 for *_, score, same in scored if same and score < threshold)
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0
    recall = true_pos / (true_pos + false_neg)
    print(f"\nthreshold {threshold:g}: {len(scored)} pairs, precision {precision:.3f}, recall {recall:.3f}")
    for a, b, score, same in scored:
        wrong = (score >= threshold) != same
        print(f"  {'MISS ' if wrong else '     '}{'same' if same else 'diff'} {score:6.2f}  {a} | {b}")
    assert precision > 0.9
    assert recall > 0.9


@pytest.mark.parametrize(("a", "b"), SAME_PERSON)
def test_scores_are_symmetric(a, b):
    assert name_similarity(a, b) == pytest.approx(name_similarity(b, a), abs=0.01)
