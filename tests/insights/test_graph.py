"""The sharing graph's rules and layout, as pure functions over small records."""

from insights.graph import (
    ContainerRow, MountRow, VolumeRow, NODE_BASE, VOLUME_X, graph_build, graph_layout,
)
from insights.svg import graph_svg


def _shop():
    """A Compose project "shop" (db writes, web reads), a loner, and an unused volume."""
    volumes = [
        VolumeRow(1, "shop_db", project="shop", size_bytes=500),
        VolumeRow(2, "shop_media", project="shop"),
        VolumeRow(3, "leftover"),
        VolumeRow(4, "a" * 64, anonymous=True),
    ]
    containers = [
        ContainerRow(10, "shop-db-1", project="shop", service="db"),
        ContainerRow(11, "shop-web-1", project="shop", service="web"),
        ContainerRow(12, "loner", state="exited"),
    ]
    mounts = [
        MountRow(10, "volume", "/var/lib/db", volume_id=1),
        MountRow(11, "volume", "/srv/db", read_only=True, volume_id=1),
        MountRow(11, "volume", "/srv/media", volume_id=2),
        MountRow(11, "bind", "/etc/app.conf", read_only=True, source="/srv/conf/app.conf"),
        MountRow(11, "tmpfs", "/tmp"),
        MountRow(12, "volume", "/data", volume_id=4),
    ]
    return volumes, containers, mounts


def _edge(graph, container_id, volume_id):
    return next(e for e in graph.edges if (e.container_id, e.volume_id) == (container_id, volume_id))


def test_volumes_and_containers_become_nodes_and_volume_mounts_edges():
    graph = graph_build(*_shop())

    assert {v.name for v in graph.volumes} == {"shop_db", "shop_media", "leftover", "a" * 64}
    assert {c.name for c in graph.containers} == {"shop-db-1", "shop-web-1", "loner"}
    assert {(e.container_id, e.volume_id) for e in graph.edges} == {(10, 1), (11, 1), (11, 2), (12, 4)}


def test_edges_carry_read_only_and_read_write():
    graph = graph_build(*_shop())

    assert _edge(graph, 10, 1).read_only is False
    assert _edge(graph, 11, 1).read_only is True
    assert _edge(graph, 11, 1).destinations == ("/srv/db",)


def test_one_edge_per_container_and_volume_is_read_write_if_any_mount_writes():
    volumes = [VolumeRow(1, "v")]
    containers = [ContainerRow(10, "c")]
    mounts = [MountRow(10, "volume", "/a", read_only=True, volume_id=1), MountRow(10, "volume", "/b", volume_id=1)]

    graph = graph_build(volumes, containers, mounts)

    assert len(graph.edges) == 1
    assert graph.edges[0].read_only is False
    assert graph.edges[0].destinations == ("/a", "/b")


def test_bind_mounts_and_tmpfs_stay_on_the_container_node():
    graph = graph_build(*_shop())

    web = graph.container("shop-web-1")
    assert [m.source for m in web.binds] == ["/srv/conf/app.conf"]
    assert [m.destination for m in web.tmpfs] == ["/tmp"]
    assert len(graph.edges) == 4  # binds and tmpfs are not edges


def test_containers_are_grouped_by_compose_project_with_the_volumes_they_use():
    graph = graph_build(*_shop())

    assert [g.project for g in graph.groups] == ["shop", ""]  # containers outside Compose last
    shop, other = graph.groups
    assert [c.name for c in shop.containers] == ["shop-db-1", "shop-web-1"]
    assert {v.name for v in shop.volumes} == {"shop_db", "shop_media"}
    assert [v.name for v in other.volumes] == ["a" * 64]
    assert graph.projects == ["shop"]


def test_unused_volume_is_flagged_and_drawn_apart():
    graph = graph_build(*_shop())

    assert [v.name for v in graph.unused] == ["leftover"]
    assert graph.volume("leftover").unused
    assert not graph.volume("shop_db").unused


def test_hide_unused_drops_them():
    graph = graph_build(*_shop(), show_unused=False)

    assert graph.unused == []
    assert graph.volume("leftover") is None


def test_volume_written_by_two_containers_is_flagged_rw_shared():
    volumes = [VolumeRow(1, "shared"), VolumeRow(2, "one-writer")]
    containers = [ContainerRow(10, "a"), ContainerRow(11, "b"), ContainerRow(12, "c")]
    mounts = [
        MountRow(10, "volume", "/d", volume_id=1), MountRow(11, "volume", "/d", volume_id=1),
        MountRow(10, "volume", "/e", volume_id=2), MountRow(12, "volume", "/e", read_only=True, volume_id=2),
    ]

    graph = graph_build(volumes, containers, mounts)

    assert graph.volume("shared").rw_shared and graph.volume("shared").writers == 2
    assert not graph.volume("one-writer").rw_shared
    assert graph.volume("one-writer").users == 2


def test_project_filter_keeps_cross_project_users_and_whole_mirror_flags():
    volumes = [VolumeRow(1, "shop_db", project="shop"), VolumeRow(2, "blog_db", project="blog"),
               VolumeRow(3, "shop_old", project="shop")]
    containers = [ContainerRow(10, "shop-db", project="shop"), ContainerRow(11, "blog-db", project="blog"),
                  ContainerRow(12, "backup-tool", project="ops")]
    mounts = [MountRow(10, "volume", "/d", volume_id=1), MountRow(11, "volume", "/d", volume_id=2),
              MountRow(12, "volume", "/d", volume_id=1)]

    graph = graph_build(volumes, containers, mounts, project="shop")

    assert {c.name for c in graph.containers} == {"shop-db", "backup-tool"}
    assert [g.project for g in graph.groups] == ["shop", "ops"]  # the chosen project first
    assert {v.name for v in graph.volumes} == {"shop_db", "shop_old"}
    assert graph.volume("shop_db").rw_shared
    assert [v.name for v in graph.unused] == ["shop_old"]
    assert graph.projects == ["blog", "ops", "shop"]


def test_focus_on_a_volume_shows_it_and_its_containers_only():
    graph = graph_build(*_shop(), focus_volume="shop_db")

    assert [v.name for v in graph.volumes] == ["shop_db"]
    assert {c.name for c in graph.containers} == {"shop-db-1", "shop-web-1"}


def test_focus_on_a_container_shows_its_volumes_and_their_other_users():
    graph = graph_build(*_shop(), focus_container="shop-db-1")

    assert [v.name for v in graph.volumes] == ["shop_db"]
    assert {c.name for c in graph.containers} == {"shop-db-1", "shop-web-1"}
    assert {(e.container_id, e.volume_id) for e in graph.edges} == {(10, 1), (11, 1)}


def test_mounts_of_volumes_outside_the_mirror_are_ignored():
    graph = graph_build([VolumeRow(1, "v")], [ContainerRow(10, "c")], [MountRow(10, "volume", "/x", volume_id=99)])

    assert graph.edges == [] and graph.volume("v").unused


def test_layout_places_containers_left_volumes_right_without_overlaps():
    volumes = [VolumeRow(i, f"vol-{i:03}", project=f"p{i % 7}") for i in range(200)]
    containers = [ContainerRow(1000 + i, f"ctr-{i:03}", project=f"p{i % 7}" if i % 5 else "") for i in range(100)]
    mounts = [MountRow(1000 + i, "volume", f"/d{j}", read_only=bool(j), volume_id=(i * 2 + j) % 150)
              for i in range(100) for j in range(2)]
    mounts += [MountRow(1000 + i, "bind", f"/b{j}", source=f"/srv/{j}") for i in range(0, 100, 9) for j in range(7)]

    layout = graph_layout(graph_build(volumes, containers, mounts))

    assert len(layout.containers) == 100 and len(layout.volumes) == 200
    assert all(box.x < VOLUME_X for _, box in layout.containers)
    for boxes in (
        [b for _, b in layout.containers],
        [b for v, b in layout.volumes if not v.unused],
        [b for v, b in layout.volumes if v.unused],
    ):
        for a in boxes:
            for b in boxes:
                if a is not b and a.x == b.x:
                    assert a.y + a.h <= b.y or b.y + b.h <= a.y, (a, b)
    assert all(box.y + box.h <= layout.height for _, box in layout.containers + layout.volumes)
    assert len(layout.edges) == len({(m.container_id, m.volume_id) for m in mounts if m.kind == "volume"})
    # 50 unused volumes sit in a grid of three columns, not one long column.
    unused = [b for v, b in layout.volumes if v.unused]
    assert len(unused) == 50 and len({b.x for b in unused}) == 3
    assert max(b.y for b in unused) - min(b.y for b in unused) < 17 * (NODE_BASE + 8)


def test_svg_links_each_node_to_its_page_and_marks_edges_and_flags():
    volumes, containers, mounts = _shop()
    containers.append(ContainerRow(13, "other-writer"))
    mounts.append(MountRow(13, "volume", "/x", volume_id=1))

    svg = graph_svg(graph_layout(graph_build(volumes, containers, mounts)))

    assert 'href="/volumes/shop_db/"' in svg
    assert 'href="/containers/?q=shop-web-1"' in svg
    assert svg.count('class="g-edge g-ro"') == 1
    assert svg.count('class="g-edge g-rw g-shared"') == 2  # two writers of shop_db
    assert 'class="g-node g-volume g-unused"' in svg
    assert 'class="g-node g-volume g-rw-shared"' in svg
    assert "bind /srv/conf/app.conf → /etc/app.conf ro" in svg
    assert "tmpfs → /tmp rw" in svg


def test_svg_escapes_names_from_the_engine():
    svg = graph_svg(graph_layout(graph_build(
        [VolumeRow(1, "v")], [ContainerRow(10, '<script>alert("x")</script>', image="i&<")],
        [MountRow(10, "bind", "/x", source='/a"<b>')],
    )))

    assert "<script>" not in svg and '"x"' not in svg
    assert "&lt;script&gt;" in svg
    assert 'q=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E"' in svg
