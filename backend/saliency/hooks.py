"""One place that installs forward hooks and always removes them.

Every recorder and intervention in the engine hooks the model the same way: install a set of forward hooks,
run the model, remove them all, also when installing one of them fails or the block raises, so the model is
left exactly as it was found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

ForwardHook = Callable[[nn.Module, tuple, object], object]
ForwardPreHook = Callable[[nn.Module, tuple], object]


class HookSet:
    """Context manager: the forward hooks ``(module, hook)`` are installed on entry and removed on exit.

    ``pre_hooks`` run before the modules' forward; ``always_call`` runs the forward hooks also when the
    forward raises (for hooks that undo what a pre-hook did)."""

    def __init__(self, hooks: Iterable[tuple[nn.Module, ForwardHook]],
                 pre_hooks: Iterable[tuple[nn.Module, ForwardPreHook]] = (), *, always_call: bool = False):
        self._hooks = list(hooks)
        self._pre_hooks = list(pre_hooks)
        self._always_call = always_call
        self._handles: list = []

    def __enter__(self) -> "HookSet":
        try:
            for module, hook in self._pre_hooks:
                self._handles.append(module.register_forward_pre_hook(hook))
            for module, hook in self._hooks:
                self._handles.append(module.register_forward_hook(hook, always_call=self._always_call))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
