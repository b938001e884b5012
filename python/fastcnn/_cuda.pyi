"""Type stubs for the compiled CUDA module (csrc/bindings/module_cuda.cpp).

The raw door to the CUDA kernels: arrays are device pointers (ints, e.g. CuPy's ``a.data.ptr``;
0 = none) of C-contiguous float32 buffers (int64 for class labels and pooling indices) with
their shapes as tuples, and ``stream`` is a ``cudaStream_t`` as an int (e.g.
``cupy.cuda.get_current_stream().ptr``). Use :mod:`fastcnn.ops` (through
``fastcnn._cuda_ops``) rather than this module: it checks dtypes and allocates outputs and
workspaces, sized by the ``*_plan`` functions. Shapes and options are checked by the same C++
checks as the CPU module's (csrc/common/args.h: the same ValueError messages); CUDA errors raise
RuntimeError.
"""

from typing import Any

Shape = tuple[int, ...]

__version__: str
cuda_archs: str  # the GPU code inside, e.g. "sm_75 sm_90 compute_90"
POOL_CHECK_WORKSPACE_BYTES: int
COL_BUDGET_FLOATS: int

def device_count() -> int: ...
def runtime_version() -> int: ...
def driver_version() -> int: ...
def available() -> bool: ...
def conv2d_plan(x_shape: Shape, w_shape: Shape, b_shape: Shape | None, stride_h: int,
                stride_w: int, pad_top: int, pad_left: int, pad_bottom: int, pad_right: int,
                dil_h: int, dil_w: int, groups: int,
                dy_shape: Shape | None = None) -> dict[str, Any]: ...
def conv2d_forward(x: int, x_shape: Shape, w: int, w_shape: Shape, b: int,
                   b_shape: Shape | None, y: int, ws: int, ws_floats: int, stride_h: int,
                   stride_w: int, pad_top: int, pad_left: int, pad_bottom: int, pad_right: int,
                   dil_h: int, dil_w: int, groups: int, relu: bool, stream: int) -> None: ...
def conv2d_backward(dy: int, dy_shape: Shape, x: int, x_shape: Shape, w: int, w_shape: Shape,
                    dx: int, dw: int, db: int, ws: int, ws_floats: int, stride_h: int,
                    stride_w: int, pad_top: int, pad_left: int, pad_bottom: int, pad_right: int,
                    dil_h: int, dil_w: int, groups: int, stream: int) -> None: ...
def relu(x: int, y: int, n: int, stream: int) -> None: ...
def relu_backward(dy: int, y: int, dx: int, n: int, stream: int) -> None: ...
def max_pool2d_plan(x_shape: Shape, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                    dh: int, dw: int, ceil_mode: bool,
                    dy_shape: Shape | None = None) -> Shape: ...
def max_pool2d_forward(x: int, x_shape: Shape, y: int, indices: int, kh: int, kw: int, sh: int,
                       sw: int, ph: int, pw: int, dh: int, dw: int, ceil_mode: bool,
                       stream: int) -> None: ...
def max_pool2d_backward(dy: int, dy_shape: Shape, x_shape: Shape, indices: int,
                        indices_shape: Shape, check_indices: bool, ws: int, ws_bytes: int,
                        dx: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
                        dw: int, ceil_mode: bool, stream: int) -> None: ...
def linear_plan(x_shape: Shape, w_shape: Shape, b_shape: Shape | None,
                dy_shape: Shape | None = None) -> dict[str, Any]: ...
def linear_forward(x: int, x_shape: Shape, w: int, w_shape: Shape, b: int,
                   b_shape: Shape | None, y: int, ws: int, ws_floats: int, relu: bool,
                   stream: int) -> None: ...
def linear_backward(dy: int, dy_shape: Shape, x: int, x_shape: Shape, w: int, w_shape: Shape,
                    dx: int, dw: int, db: int, ws: int, ws_floats: int, stream: int) -> None: ...
def softmax(x: int, x_shape: Shape, y: int, log: bool, stream: int) -> None: ...
def cross_entropy_plan(logits_shape: Shape, labels_shape: Shape, labels_kind: str) -> int: ...
def cross_entropy(logits: int, logits_shape: Shape, labels: int, targets: int,
                  labels_shape: Shape, dlogits: int, ws: int, ws_bytes: int, loss: int,
                  check: int, stream: int) -> None: ...
def sgd_update(p: int, g: int, buf: int, n: int, lr: float, momentum: float,
               weight_decay: float, nesterov: bool, first_step: bool, stream: int,
               skip: int = 0) -> None: ...
def adam_update(p: int, g: int, m: int, v: int, n: int, step_size: float, beta1: float,
                one_minus_beta1: float, beta2: float, one_minus_beta2: float, sqrt_bc2: float,
                eps: float, l2: float, decay: float, has_l2: bool, has_decay: bool,
                stream: int, skip: int = 0) -> None: ...

# launch plans (csrc/bindings/cuda_plans.cpp): built once per shapes and options with the
# matching *_plan function's arguments and checks, launched with device pointers only
class Conv2dPlan:
    y_shape: Shape
    forward_workspace: int
    backward_data_workspace: int
    backward_weights_workspace: int
    backward_bias_workspace: int
    def __init__(self, x_shape: Shape, w_shape: Shape, b_shape: Shape | None, stride_h: int,
                 stride_w: int, pad_top: int, pad_left: int, pad_bottom: int, pad_right: int,
                 dil_h: int, dil_w: int, groups: int, dy_shape: Shape | None = None) -> None: ...
    def forward(self, x: int, w: int, b: int, y: int, ws: int, ws_floats: int, relu: bool,
                stream: int) -> None: ...
    def backward(self, dy: int, x: int, w: int, dx: int, dw: int, db: int, ws: int,
                 ws_floats: int, stream: int) -> None: ...
    def gemms(self, pass_: str, sms: int = 132) -> list[dict[str, Any]]: ...
class Conv2dPooledBackwardPlan:
    grad_workspace: int
    backward_data_workspace: int
    backward_weights_workspace: int
    backward_bias_workspace: int
    def __init__(self, x_shape: Shape, w_shape: Shape, stride_h: int, stride_w: int,
                 pad_top: int, pad_left: int, pad_bottom: int, pad_right: int, dil_h: int,
                 dil_w: int, groups: int, dy_shape: Shape, indices_shape: Shape, pool_kh: int,
                 pool_kw: int, pool_sh: int, pool_sw: int, pool_ph: int, pool_pw: int,
                 pool_ceil_mode: bool, relu_y_shape: Shape | None = None) -> None: ...
    def backward(self, dy: int, indices: int, relu_y: int, x: int, w: int, dx: int, dw: int,
                 db: int, ws: int, ws_floats: int, stream: int) -> None: ...
class LinearPlan:
    y_shape: Shape
    forward_workspace: int
    backward_data_workspace: int
    backward_weights_workspace: int
    backward_bias_workspace: int
    def __init__(self, x_shape: Shape, w_shape: Shape, b_shape: Shape | None,
                 dy_shape: Shape | None = None) -> None: ...
    def forward(self, x: int, w: int, b: int, y: int, ws: int, ws_floats: int, relu: bool,
                stream: int) -> None: ...
    def backward(self, dy: int, x: int, w: int, dx: int, dw: int, db: int, ws: int,
                 ws_floats: int, stream: int) -> None: ...
    def gemms(self, pass_: str, sms: int = 132) -> list[dict[str, Any]]: ...
class MaxPool2dPlan:
    y_shape: Shape
    def __init__(self, x_shape: Shape, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                 dh: int, dw: int, ceil_mode: bool, dy_shape: Shape | None = None,
                 indices_shape: Shape | None = None) -> None: ...
    def forward(self, x: int, y: int, indices: int, stream: int) -> None: ...
    def backward(self, dy: int, indices: int, check_indices: bool, ws: int, ws_bytes: int,
                 dx: int, stream: int) -> None: ...
class BatchNormPlan:
    workspace_bytes: int
    def __init__(self, x_shape: Shape, weight_shape: Shape | None, bias_shape: Shape | None,
                 running_mean_shape: Shape | None, running_var_shape: Shape | None,
                 training: bool, momentum: float, eps: float) -> None: ...
    def forward(self, x: int, weight: int, bias: int, running_mean: int, running_var: int,
                y: int, mean: int, invstd: int, ws: int, ws_bytes: int, relu: bool,
                stream: int) -> None: ...
class BatchNormBackwardPlan:
    workspace_bytes: int
    def __init__(self, dy_shape: Shape, x_shape: Shape, weight_shape: Shape | None,
                 mean_shape: Shape, invstd_shape: Shape, training: bool,
                 relu_y_shape: Shape | None = None) -> None: ...
    def backward(self, dy: int, x: int, weight: int, mean: int, invstd: int, relu_y: int,
                 dx: int, dweight: int, dbias: int, ws: int, ws_bytes: int,
                 stream: int) -> None: ...
class SoftmaxPlan:
    def __init__(self, x_shape: Shape, log: bool) -> None: ...
    def forward(self, x: int, y: int, stream: int) -> None: ...
class CrossEntropyPlan:
    workspace_bytes: int
    def __init__(self, logits_shape: Shape, labels_shape: Shape, labels_kind: str) -> None: ...
    def run(self, logits: int, labels: int, targets: int, dlogits: int, ws: int, ws_bytes: int,
            loss: int, check: int, stream: int) -> None: ...
