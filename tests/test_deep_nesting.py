"""Files an installer or operator writes, nested 100,000 levels deep: a clear error, not a traceback.

The OCPP frames are in tests/backends/ocpp/test_ocpp_deep_json.py. Here the TOML files: the station's config
(`station check-config`, `station run`), the MCSP server's tags file and a simulator scenario.
tomllib recurses once per level of nested arrays or inline tables, so such a file raised RecursionError.
"""

from __future__ import annotations

import pytest

from station import config as configmod
from station.cli import main
from station.errors import ConfigError
from station.servers.mcsp.tags import load_tags
from station.sim import scenario

DEEP = 100_000


@pytest.mark.parametrize("text", ["a = " + "[" * DEEP + "]" * DEEP + "\n", "a = " + "{b = " * DEEP + "1" + "}" * DEEP])
def test_a_deeply_nested_file_is_a_clear_error(tmp_path, capsys, text):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply"):
        configmod.load(path)
    assert main(["check-config", str(path)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    with pytest.raises(ValueError, match="nested too deeply"):
        load_tags(path)
    with pytest.raises(scenario.ScenarioError, match="nested too deeply"):
        scenario.load(path)
