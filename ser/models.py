"""The model registry: adding a model is one decorated function here."""
from __future__ import annotations

from ser.console import import_keras
from ser.corpora import N_CLASSES

MODELS: dict = {}


def register(name):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def _layers():
    keras = import_keras()
    return keras, keras.layers


@register("basic_cnn")
def basic_cnn(input_shape, n_classes=N_CLASSES):
    """Conv1D(64, 5) - Dropout - Flatten - Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape),
                             L.Conv1D(64, 5, padding="same", activation="relu"),
                             L.Dropout(0.2), L.Flatten(),
                             L.Dense(n_classes, activation="softmax")], name="basic_cnn")


def _improved_blocks(L):
    return [L.Conv1D(128, 3, padding="same", activation="relu"), L.Dropout(0.2),
            L.MaxPooling1D(2),
            L.Conv1D(128, 4, padding="same", activation="relu"), L.Dropout(0.2)]


@register("improved_cnn")
def improved_cnn(input_shape, n_classes=N_CLASSES):
    """Two Conv1D(128) blocks with dropout and pooling, Flatten, Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), *_improved_blocks(L), L.Flatten(),
                             L.Dense(n_classes, activation="softmax")], name="improved_cnn")


@register("cnn_gru")
def cnn_gru(input_shape, n_classes=N_CLASSES):
    """The improved CNN's two conv blocks, then GRU(128), Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), *_improved_blocks(L), L.GRU(128),
                             L.Dense(n_classes, activation="softmax")], name="cnn_gru")


@register("lstm")
def lstm(input_shape, n_classes=N_CLASSES):
    """LSTM(128, sequences) - Dropout - LSTM(64) - Dropout - Dense(softmax)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), L.LSTM(128, return_sequences=True),
                             L.Dropout(0.2), L.LSTM(64), L.Dropout(0.2),
                             L.Dense(n_classes, activation="softmax")], name="lstm")


@register("mlp")
def mlp(input_shape, n_classes=N_CLASSES):
    """Beyond the original: an MLP for the pooled-statistics features (``--feature stats``)."""
    keras, L = _layers()
    return keras.Sequential([keras.Input(input_shape), L.Flatten(), L.Dropout(0.2),
                             L.Dense(256, activation="relu"), L.Dropout(0.4),
                             L.Dense(128, activation="relu"), L.Dropout(0.4),
                             L.Dense(n_classes, activation="softmax")], name="mlp")


ORIGINAL_MODELS = ("basic_cnn", "improved_cnn", "cnn_gru", "lstm")


def compile_model(model, lr: float):
    keras = import_keras()
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def ensemble_of(members: list, input_shape: tuple):
    """One Keras model whose output is the mean of the members' class probabilities."""
    keras = import_keras()
    inp = keras.Input(input_shape)
    outs = [keras.Model(m.inputs[0], m.outputs[0], name=f"member{i + 1}")(inp)
            for i, m in enumerate(members)]
    return keras.Model(inp, keras.layers.Average(name="average")(outs),
                       name=f"{members[0].name}_x{len(members)}")


def build_model(model_name: str, input_shape: tuple, members: int = 1):
    """An untrained ``model_name`` (or an ensemble of ``members`` of them)."""
    if members == 1:
        return MODELS[model_name](input_shape)
    return ensemble_of([MODELS[model_name](input_shape) for _ in range(members)], input_shape)
