"""dl_enqueue's releases never change once shipped: a migration (or a downgrade) installs the
text of its release, so a database upgraded long ago and a fresh one run the same function.

Each digest was taken when its release shipped. A new release adds its line here; an old
line that stops matching means a shared builder (dispatch_ctes, the insert, the checks)
changed what an earlier release renders.
"""

from __future__ import annotations

import hashlib

import pytest

from app.db.enqueue_function import RELEASES, enqueue_function

SHIPPED = {
    11: "b669ce518fe8fbd5",
    13: "fae9a73ddf44bcb2",
    14: "127341cae15b92ea",
    16: "df85d5015d2800cf",
    17: "d1092f702344f5de",
    18: "e343bc287125d365",
}


def test_every_release_has_a_shipped_digest() -> None:
    assert set(RELEASES) == set(SHIPPED)


@pytest.mark.parametrize("release", sorted(SHIPPED))
def test_a_shipped_release_renders_as_it_shipped(release: int) -> None:
    rendered = enqueue_function("dl_schema", release)

    assert hashlib.sha256(rendered.encode()).hexdigest()[:16] == SHIPPED[release]
