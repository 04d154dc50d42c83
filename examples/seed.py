"""The seed example (TensorFlow's documentation example) through the Python package."""
import xent

loss = xent.softmax_cross_entropy_with_logits(labels=[[1, 0, 0], [0, 0.8, 0.2]], logits=[[4, 2, 1], [0, 5, 1]])
print(repr(loss))
