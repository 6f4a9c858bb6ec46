"""A stand-in for TensorFlow's official TF1 ResNet SavedModel (resnet_v1_fp32_savedmodel_NHWC_jpg):
built with tf.compat.v1 in graph mode with v1 control flow, as TF 1.x wrote it, under the tag
"serve", its serving_default taking JPEG strings as ``input`` and giving ``classes`` (int64 [N])
and ``probabilities`` (float [N, 1001], class 0 the background).

    python -m tests.app.tf1_model OUT_DIR

Run as its own process: graph mode is global to the process that turns it on."""
from __future__ import annotations

import sys

SIZE = 8
CLASSES = 1001


def build(out_dir: str) -> None:
    import tensorflow as tf
    v1 = tf.compat.v1
    v1.disable_eager_execution()
    v1.disable_control_flow_v2()
    with v1.Graph().as_default(), v1.Session() as session:
        data = v1.placeholder(tf.string, [None], name="input_tensor")

        def decode(one):
            image = tf.cast(tf.image.decode_jpeg(one, channels=3), tf.float32)
            return v1.image.resize_bilinear(image[None], [SIZE, SIZE])[0]
        images = tf.map_fn(decode, data, dtype=tf.float32, back_prop=False)
        flat = tf.reshape(images, [-1, SIZE * SIZE * 3]) / 255.0
        weights = v1.get_variable("w", [SIZE * SIZE * 3, CLASSES],
                                  initializer=v1.random_normal_initializer(seed=1))
        logits = tf.matmul(flat, weights)
        outputs = {"classes": tf.argmax(logits, 1, name="ArgMax"),
                   "probabilities": tf.nn.softmax(logits, name="softmax_tensor")}
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(out_dir)
        signature = v1.saved_model.predict_signature_def(inputs={"input": data}, outputs=outputs)
        builder.add_meta_graph_and_variables(
            session, [v1.saved_model.tag_constants.SERVING],
            signature_def_map={"serving_default": signature, "predict": signature})
        builder.save()


if __name__ == "__main__":
    build(sys.argv[1])
