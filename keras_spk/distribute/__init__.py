"""Training on several devices and machines.

- `cross_replica_sum`, `num_replicas`: what a layer that updates its own
  state (e.g. `CenterLoss`'s centres) needs to stay exact in data-parallel
  training, under `tf.distribute` (TensorFlow backend) and
  `torch.distributed` (PyTorch backend) alike.
- `mirrored_strategy`: several GPUs of one machine under TensorFlow
  (`tf.distribute.MirroredStrategy`, through `model.fit`).
- `DataParallel`: data-parallel training under PyTorch started with
  `torchrun` (one process per device, NCCL on GPUs, gloo on CPU), through
  `model.fit`: gradients averaged across processes inside the optimizer,
  weights broadcast from rank 0, each process its share of every batch.

Multi-machine TensorFlow is not offered: `MultiWorkerMirroredStrategy`
does not work with Keras 3's `model.fit` (keras-team/keras#20585), and
`keras.distribution` is JAX-only. On several machines, use the PyTorch
backend with `torchrun`.
"""

from keras_spk.distribute.data_parallel import DataParallel
from keras_spk.distribute.data_parallel import data_parallel_from_environment
from keras_spk.distribute.mirrored import mirrored_strategy
from keras_spk.distribute.replicas import cross_replica_sum
from keras_spk.distribute.replicas import num_replicas

__all__ = [
    "DataParallel",
    "cross_replica_sum",
    "data_parallel_from_environment",
    "mirrored_strategy",
    "num_replicas",
]
