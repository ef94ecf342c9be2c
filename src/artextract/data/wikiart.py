"""Facts about the ArtGAN "refined" WikiArt dataset that do not come from the user's files.

The class names here are the published ones (the class files of cs-chan/ArtGAN); `prepare` always reads the
class files it is given and uses these only to generate synthetic data.
"""

from artextract.config import TASKS as TASKS  # defined with the config, re-exported with the dataset's facts

ARTISTS = (
    "Albrecht_Durer", "Boris_Kustodiev", "Camille_Pissarro", "Childe_Hassam", "Claude_Monet", "Edgar_Degas",
    "Eugene_Boudin", "Gustave_Dore", "Ilya_Repin", "Ivan_Aivazovsky", "Ivan_Shishkin", "John_Singer_Sargent",
    "Marc_Chagall", "Martiros_Saryan", "Nicholas_Roerich", "Pablo_Picasso", "Paul_Cezanne", "Pierre_Auguste_Renoir",
    "Pyotr_Konchalovsky", "Raphael_Kirchner", "Rembrandt", "Salvador_Dali", "Vincent_van_Gogh",
)

GENRES = (
    "abstract_painting", "cityscape", "genre_painting", "illustration", "landscape", "nude_painting", "portrait",
    "religious_painting", "sketch_and_study", "still_life",
)

STYLES = (
    "Abstract_Expressionism", "Action_painting", "Analytical_Cubism", "Art_Nouveau", "Baroque",
    "Color_Field_Painting", "Contemporary_Realism", "Cubism", "Early_Renaissance", "Expressionism", "Fauvism",
    "High_Renaissance", "Impressionism", "Mannerism_Late_Renaissance", "Minimalism", "Naive_Art_Primitivism",
    "New_Realism", "Northern_Renaissance", "Pointillism", "Pop_Art", "Post_Impressionism", "Realism", "Rococo",
    "Romanticism", "Symbolism", "Synthetic_Cubism", "Ukiyo_e",
)

# The class file says one name, the image folder another.
STYLE_FOLDERS = {"Art_Nouveau": "Art_Nouveau_Modern"}


def style_folder(style: str) -> str:
    return STYLE_FOLDERS.get(style, style)


def artist_slug(artist: str) -> str:
    """`Vincent_van_Gogh` -> `vincent-van-gogh`, the spelling used in WikiArt file names."""
    return artist.lower().replace("_", "-")
