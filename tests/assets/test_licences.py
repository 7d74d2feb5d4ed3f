"""Nothing CC-BY-SA, GPL or of unknown licence enters the world's training pool or sprites."""

from tests.assets.conftest import requires_assets

pytestmark = requires_assets


def test_manifest_records_exclusions_with_their_licence():
    from frieren_rt.assets.licences import load_manifest

    entries = load_manifest()
    by_name = {e.path.rsplit("/", 1)[-1]: e for e in entries if e.source == "debian/endless-sky-data"}
    assert by_name["heavy rocket hit.wav"].licence == "CC-BY-SA-3.0"
    assert by_name["explosion huge.wav"].licence == "CC-BY-SA-3.0"
    assert all(e.licence and e.attribution and e.source for e in entries)
    aisfx = [e for e in entries if e.source.startswith("pypi/aisfx")]
    assert aisfx and all(e.licence == "CC-BY-4.0" for e in aisfx)


def test_world_pool_and_sprites_use_only_allowed_licences():
    from frieren_rt.assets.licences import ALLOWED_LICENCES, load_manifest
    from frieren_rt.world.sound_pool import class_entries, load_pool
    from frieren_rt.world.sprites import SPRITES

    assert ALLOWED_LICENCES == {"CC0-1.0", "public-domain", "BSD-3-Clause", "MIT"}
    entries = {e.id: e for e in load_manifest()}
    pool = load_pool()
    assert pool.sounds
    for sid in pool.sounds:
        assert entries[sid].licence in ALLOWED_LICENCES, sid
        assert "explosion huge" not in sid and "heavy rocket hit" not in sid
    for group in class_entries(list(entries.values())).values():
        assert all(e.licence in ALLOWED_LICENCES and e.kind == "sound" for e in group)
    images = {e.path.removeprefix("arcade/resources/assets/images/"): e for e in entries.values()
              if e.kind == "image"}
    for rel in SPRITES.values():
        assert images[rel].licence in ALLOWED_LICENCES
