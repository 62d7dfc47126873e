"""Reading config files: anything that is not UTF-8 text is one error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwssl.config import ConfigError, load_search_space, load_toml
from hwssl.config.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "lenet_mnist5k.toml"
PROFILE = ROOT / "hardware_profiles" / "x86_cpu.toml"


def _encoded(tmp_path: Path, source: Path, encoding: str) -> Path:
    path = tmp_path / f"{source.stem}-{encoding}.toml"
    path.write_bytes(source.read_text(encoding="utf-8").encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("load, source", [(load_search_space, SPACE), (load_profile, PROFILE)],
                         ids=["space", "profile"])
def test_utf16_file_is_one_error_naming_the_file(tmp_path, load, source, encoding):
    path = _encoded(tmp_path, source, encoding)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.path == str(path) and err.value.key is None
    assert str(err.value) == f"{path}: expected a UTF-8 text (TOML) file, but it is UTF-16 text (save it as UTF-8)"


@pytest.mark.parametrize("load", [load_search_space, load_profile], ids=["space", "profile"])
def test_binary_file_is_one_error_naming_the_file(tmp_path, load):
    gzip = tmp_path / "space.toml"
    gzip.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    with pytest.raises(ConfigError, match=r"byte 0x8b at offset 1 is not UTF-8 \(is it a binary file\?\)") as err:
        load(gzip)
    assert str(err.value).startswith(f"{gzip}: expected a UTF-8 text (TOML) file, but ")
    nul = tmp_path / "nul.toml"
    nul.write_bytes(b'name = "x"\n\x00\x00\x01')
    with pytest.raises(ConfigError, match=r"NUL byte at offset 11") as err:
        load(nul)
    assert err.value.path == str(nul)


def test_utf8_with_byte_order_mark_and_non_ascii_text_read_fine(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes("\ufeffdescription = \"Cortex-A72 (Raspberry Pi 4), 1,5 GHz – ≈\"\n".encode("utf-8"))
    assert load_toml(path) == {"description": "Cortex-A72 (Raspberry Pi 4), 1,5 GHz – ≈"}
