import unicodedata

from artextract.data.names import name_key, repair_mojibake, to_mojibake
from artextract.data.path_index import PathIndex

from conftest import REAL_MOJIBAKE


def test_the_real_mojibake_sequences_are_repaired():
    for broken, meant in REAL_MOJIBAKE.items():
        assert repair_mojibake(f"x{broken}y.jpg") == f"x{meant}y.jpg"
    assert repair_mojibake("Expressionism/grã©goire-michonze_picasso-1971.jpg") == \
        "Expressionism/grégoire-michonze_picasso-1971.jpg"


def test_repair_leaves_proper_names_alone():
    for name in ["plain.jpg", "grégoire.jpg", "kvitebjørn.jpg", "東京.jpg", "x\u2019y.jpg"]:
        assert repair_mojibake(name) == name
        assert repair_mojibake(to_mojibake(name)) == name.lower()


def test_index_resolves_every_spelling():
    on_disk = [
        "Impressionism/joaquín-sorolla_girl.jpg",
        unicodedata.normalize("NFD", "Symbolism/arnold-böcklin_spring-1875.jpg"),
        "Romanticism/pierre-paul-prud'hon_study.jpg",
        "Realism/Ivan-Shishkin_Forest.JPG",
        "Baroque/rembrandt_night-watch.jpg",
    ]
    index = PathIndex(on_disk)
    cases = {
        "Impressionism/joaquã\xadn-sorolla_girl.jpg": ("Impressionism/joaquín-sorolla_girl.jpg", "mojibake"),
        "Symbolism/arnold-bã¶cklin_spring-1875.jpg": (on_disk[1], "mojibake"),
        "Symbolism/arnold-böcklin_spring-1875.jpg": (on_disk[1], "unicode"),
        "Romanticism/pierre-paul-prud\u2019hon_study.jpg": (on_disk[2], "apostrophe"),
        "Romanticism/pierre-paul-prudhon_study.jpg": (on_disk[2], "apostrophe"),
        "Realism/ivan-shishkin_forest.jpg": (on_disk[3], "case"),
        "Baroque/rembrandt_night-watch.jpg": (on_disk[4], "exact"),
    }
    for csv_path, (real, how) in cases.items():
        found = index.resolve(csv_path)
        assert found is not None, csv_path
        assert (found.path, found.how) == (real, how), csv_path
    assert index.resolve("Baroque/rembrandt_day-watch.jpg") is None
    assert index.closest("Baroque/rembrandt_day-watch.jpg") == "Baroque/rembrandt_night-watch.jpg"


def test_a_wrapper_folder_is_detected_and_dropped():
    index = PathIndex(["wikiart/Baroque/a.jpg", "wikiart/Realism/b.jpg"], csv_top_folders={"Baroque", "Realism"})
    found = index.resolve("Baroque/a.jpg")
    assert found is not None and found.path == "Baroque/a.jpg"
    assert index.member("Baroque/a.jpg") == "wikiart/Baroque/a.jpg"
    # A lone style folder is not a wrapper when the CSVs name it.
    assert PathIndex(["Baroque/a.jpg"], {"Baroque"}).resolve("Baroque/a.jpg") is not None
    # Strays beside the wrapper (a top-level README, macOS resource forks) do not hide it.
    strays = PathIndex(["README.txt", "__MACOSX/wikiart/Baroque/._a.jpg", "wikiart/Baroque/a.jpg"], {"Baroque"})
    assert strays.member("Baroque/a.jpg") == "wikiart/Baroque/a.jpg"


def test_name_key_is_one_key_per_spelling():
    spellings = ["Art/Grégoire.jpg", unicodedata.normalize("NFD", "Art/Grégoire.jpg"), "art/grã©goire.jpg"]
    assert len({name_key(s) for s in spellings}) == 1
