"""Training side of streamcolor: the Keras 3 network, data preparation,
training, evaluation and export.  Needs the ``train`` extra (TensorFlow/Keras)."""
