"""The full-decode yardstick: the bench's twin of each model that decodes every pixel of a
JPEG, and the limit child that measures it beside the prepared (DCT-scaled) graph."""
import io

import numpy as np
import pytest
from PIL import Image

from bench import images, limit, models, servers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model and its full-decode twin, built once: (cache dir, prepared, twin)."""
    cache = tmp_path_factory.mktemp("models")
    prepared = models.ensure("tiny", cache)
    return cache, prepared, models.full_decode_dir("tiny", cache)


def _jpeg_ratios(model_dir) -> set[int]:
    """The ``ratio`` of every DecodeJpeg op in the saved graph, its functions included (an
    attribute at its default, 1, is left out of a saved graph)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((model_dir / "saved_model.pb").read_bytes())
    (graph,) = [meta.graph_def for meta in saved.meta_graphs]
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    return {node.attr["ratio"].i if "ratio" in node.attr else 1 for node in nodes if node.op == "DecodeJpeg"}


def _scores(model_dir, image: bytes) -> np.ndarray:
    import tensorflow as tf

    infer, input_name = limit.load(model_dir)
    (scores,) = infer(**{input_name: tf.constant([image])}).values()
    return scores.numpy()[0]


@pytest.mark.slow
def test_the_twin_decodes_every_pixel_and_the_prepared_graph_each_dct_scale(tiny):
    _, prepared, twin = tiny
    assert _jpeg_ratios(twin) == {1}
    assert _jpeg_ratios(prepared) == {1, 2, 4, 8}


@pytest.mark.slow
def test_the_twin_answers_as_the_prepared_graph_within_the_scaled_decodes_change(tiny):
    """Same network, same weights: on a JPEG under twice the input (decoded at ratio 1 by
    both) the same scores exactly; on a 12 MP photo-like one (1/8 in the prepared graph)
    different pixels, so different scores, within 0.01 and the same best class. (The tiny
    model's weights are seeded, so this is the same comparison each run; with other random
    weights its raw-pixel head has been seen to move a score by 0.015.)"""
    _, prepared, twin = tiny
    small = images.make_jpeg(400, 300, seed=1)
    assert np.array_equal(_scores(prepared, small), _scores(twin, small))
    photo = images.make_jpeg(4032, 3024, seed=2)
    scaled, full = _scores(prepared, photo), _scores(twin, photo)
    assert not np.array_equal(scaled, full)
    assert np.abs(scaled - full).max() < 0.01 and scaled.argmax() == full.argmax()


@pytest.mark.parametrize(("width", "height", "ratio"), [(4032, 3024, 8), (1024, 768, 2), (1792, 1000, 4),
                                                        (446, 600, 1), (447, 600, 2), (448, 448, 2)])
def test_the_request_ratio_is_the_prepared_graphs(width, height, ratio):
    assert limit.request_ratio(images.make_jpeg(width, height)) == ratio


def test_a_request_that_is_not_a_jpeg_decodes_at_ratio_1():
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 2000), (10, 20, 30)).save(buffer, format="PNG")
    assert limit.request_ratio(buffer.getvalue()) == 1


@pytest.mark.slow
@pytest.mark.parametrize(("size", "ratio"), [((1024, 768), 2), ((320, 240), 1)])
def test_the_limit_child_measures_the_twin_where_the_request_decodes_scaled(tiny, tmp_path, size, ratio):
    cache, prepared, twin = tiny
    image_file = tmp_path / "request.jpg"
    image_file.write_bytes(images.make_jpeg(*size))
    with limit.running("tiny", cache, image_file, [1, 2], 0.2, servers.BENCH_ROOT, tmp_path / "limit.log") as probe:
        assert probe.model_dir == prepared and probe.full_decode["ratio"] == ratio
        if ratio == 1:
            assert probe.full_decode["limit"] is None
            with pytest.raises(ValueError, match="ratio 1"):
                probe.measure(1, 0.2, full_decode=True)
            return
        assert probe.full_decode["model_dir"] == str(twin)
        assert [row["batch"] for row in probe.full_decode["limit"]["by_batch"]] == [1, 2]
        turn = probe.measure(2, 0.2, full_decode=True)
        assert turn["batch"] == 2 and turn["images"] >= 6 and turn["cpu_s_per_image"] > 0
