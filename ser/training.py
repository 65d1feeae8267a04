"""Training and evaluation: one fold, a comparison over folds, the all-data model."""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ser.checkpoint import (
    library_versions,
    make_sidecar,
    model_input,
    save_model,
    sidecar_path,
)
from ser.calibration import apply_temperature, ece, fit_temperature, selective
from ser.cluster import dask_backend, exit_with_parent
from ser.console import import_keras
from ser.files import atomic_path
from ser.models import MODELS, build_model, compile_model, ensemble_of
from ser.normalization import adaptation_of, fit_normalization
from ser.paths import FEATURES_DIR, MEDIA_DIR
from ser.protocols import Dataset, Fold, load_dataset, make_folds, split_speaker
from ser.reports import (
    plot_comparison,
    results_markdown,
    update_results,
    write_model_reports,
)


@dataclass
class TrainConfig:
    epochs: int = 150
    batch_size: int = 16
    learning_rate: float = 0.001
    patience: int = 10
    seed: int = 42
    norm: str = "none"          # ser.normalization.NORMS: none | global | speaker (_adapt)
    augment: int = 0            # augmented copies of the training rows (ser/augment.py)
    ensemble: int = 1           # members trained apart (seeds seed, seed+1, ...) and averaged
    verbose: int = 0


def train_one(model_name: str, ds: Dataset, fold: Fold, cfg: TrainConfig, *,
              epochs_fixed: bool = False):
    """Train ``model_name`` on ``fold``; returns (model, history dict, norm, seconds).

    With ``cfg.ensemble`` = N > 1, N models are trained apart (seeds ``cfg.seed`` + 0..N-1,
    each with its own early stopping) and returned as one averaging model
    (:func:`ensemble_of`); the history is the first member's, its ``best_epoch`` the median
    of the members'.
    """
    keras = import_keras()
    if cfg.ensemble > 1:
        members, hists, seconds = [], [], 0.0
        for i in range(cfg.ensemble):
            one = replace(cfg, seed=cfg.seed + i, ensemble=1)
            m, h, norm, sec = train_one(model_name, ds, fold, one, epochs_fixed=epochs_fixed)
            members.append(m)
            hists.append(h)
            seconds += sec
        hist = dict(hists[0])
        hist["member_best_epochs"] = [h["best_epoch"] for h in hists]
        hist["best_epoch"] = int(np.median(hist["member_best_epochs"]))
        return ensemble_of(members, tuple(members[0].input_shape[1:])), hist, norm, seconds
    keras.utils.set_random_seed(cfg.seed)
    Xtr, ytr, _ = ds.training_rows(fold.train)
    norm = fit_normalization(Xtr, cfg.norm)
    meta = {"normalization": norm, "input_shape": [ds.X.shape[1], 1]}
    Xtr = model_input(Xtr, meta)
    model = compile_model(MODELS[model_name](tuple(meta["input_shape"])), cfg.learning_rate)
    callbacks = []
    val = None
    if fold.val is not None and len(fold.val):
        val = (model_input(ds.X[fold.val], meta), ds.y[fold.val])
        if not fold.test_is_val and not epochs_fixed:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True,
                start_from_epoch=5))
    t0 = time.perf_counter()
    h = model.fit(Xtr, ytr, batch_size=cfg.batch_size, epochs=cfg.epochs,
                  validation_data=val, callbacks=callbacks, verbose=cfg.verbose, shuffle=True)
    seconds = time.perf_counter() - t0
    hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
    best_epoch = len(hist["loss"])
    if callbacks and callbacks[0].best_weights is not None:
        # the epoch whose weights the model now has: Keras looks for the best validation loss
        # from epoch start_from_epoch + 1 on only (and restores it at the end), so the
        # all-data model trains as many epochs as the evaluated ones had (not argmin over
        # every epoch, which once gave 2 where the evaluated models had >= 6)
        best_epoch = int(callbacks[0].best_epoch) + 1
    hist["best_epoch"] = best_epoch
    return model, hist, norm, seconds


def predict_proba(model, X: np.ndarray, norm: dict | None) -> np.ndarray:
    meta = {"normalization": norm, "input_shape": [X.shape[1], 1]}
    return np.asarray(model.predict(model_input(X, meta), batch_size=512, verbose=0))


def metrics(y_true, y_pred, labels=None) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    with warnings.catch_warnings():   # a corpus without some class (TESS has no calm):
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")   # expected
        uar = float(balanced_accuracy_score(y_true, y_pred))
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "uar": uar,
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=labels,
                                       zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", labels=labels,
                                          zero_division=0))}


def corpus_uars(y_true, proba) -> dict:
    """UAR restricted to the classes the test set has (argmax over them) and 8-way."""
    from sklearn.metrics import balanced_accuracy_score
    present = np.unique(y_true)
    restricted = present[np.argmax(proba[:, present], axis=1)]
    with warnings.catch_warnings():   # 8-way: predicting a class the test corpus lacks is
        warnings.simplefilter("ignore", UserWarning)   # the point, not a warning
        eight = balanced_accuracy_score(y_true, np.argmax(proba, axis=1))
    return {"uar_restricted": float(balanced_accuracy_score(y_true, restricted)),
            "uar_8way": float(eight)}


def _adapt(ds: Dataset, cfg: TrainConfig) -> tuple[Dataset, TrainConfig, str]:
    """The data and configuration the models train on, and the adaptation's name.

    ``--norm speaker``: every actor's rows z-scored with that actor's own statistics (in a
    speaker or corpus fold every actor lies in one part, so the statistics come from that
    actor's own unlabelled rows only); the models then see no further normalisation.
    """
    adaptation = adaptation_of(cfg.norm)
    if adaptation == "speaker":
        ds = ds.speaker_normalized()
        cfg = replace(cfg, norm="none")
    return ds, cfg, adaptation


def _fold_result(model_name: str, ds: Dataset, fold: Fold, cfg: TrainConfig, protocol: str):
    """Train and test one fold: ``((metrics, history, y_true, y_pred, epochs, seconds,
    (test probabilities, the same calibrated or None)), model, norm)``.

    The temperature (ser/calibration.py) is fitted on the fold's validation rows (speakers
    the model did not train on, in the speaker and corpus protocols) and, with ``--augment``,
    on their augmented copies too (the same speakers through other recording chains: a
    temperature fitted on the validation speakers' own chain alone left the model
    over-confident on another corpus), and judged on its test rows: ``temperature``, ``ece``
    and ``ece_calibrated`` join the fold's metrics.
    """
    model, hist, norm, s = train_one(model_name, ds, fold, cfg)
    y = ds.y[fold.test]
    proba = predict_proba(model, ds.X[fold.test], norm)
    pred = np.argmax(proba, axis=1)
    m = metrics(y, pred)
    if protocol == "corpus":
        m.update(corpus_uars(y, proba))
    calibrated = None
    if fold.val is not None and len(fold.val) and not fold.test_is_val:
        Xv, yv, _ = ds.training_rows(fold.val)      # the originals and their copies
        t = fit_temperature(predict_proba(model, Xv, norm), yv)
        calibrated = apply_temperature(proba, t)
        m.update({"temperature": t, "ece": ece(proba, y), "ece_calibrated": ece(calibrated, y)})
    return (m, hist, y, pred, len(hist["loss"]), s, (proba, calibrated)), model, norm


def _fold_task(model_name: str, ds: Dataset, fold: Fold, cfg: TrainConfig, protocol: str,
               weights: bool = False) -> tuple:
    """One training of a comparison as a task for another process (a Dask worker): the
    6-tuple of :func:`_fold_result` without the Keras model, plus ``(norm, the model's
    weights)`` if ``weights``. Seeded by ``cfg.seed`` (train_one): the same wherever it runs."""
    out, model, norm = _fold_result(model_name, ds, fold, cfg, protocol)
    return (*out, norm, model.get_weights()) if weights else out


def _fold_task_isolated(*args) -> tuple:
    """:func:`_fold_task` in a child process of the Dask worker that runs this (one per worker
    thread, reused: TensorFlow is imported once per worker).

    A Dask worker runs a task in a thread beside its event loop, and that loop draws from
    Python's global ``random`` (heartbeat jitter, connection back-off) while Keras draws its
    default layer seeds from the same generator (``keras.random.SeedGenerator``); in the
    worker's own process a seeded training would depend on the timing of heartbeats. In the
    child the training thread is alone, as in a local run: the results are the local run's.
    """
    from joblib.externals.loky import get_reusable_executor
    try:
        from distributed import get_worker
        n = get_worker().state.nthreads
    except (ImportError, ValueError):
        n = 1
    return get_reusable_executor(max_workers=n, initializer=exit_with_parent).submit(
        _fold_task, *args).result()


def _cluster_folds(models: list[str], ds: Dataset, folds: list[Fold], cfg: TrainConfig,
                   protocol: str, scheduler: str, progress: bool = True) -> dict:
    """Every (model, fold) training as a task on the Dask cluster at ``scheduler`` (joblib's
    dask backend); returns, per model, the fold results as :func:`_fold_result` does (the
    last fold's model rebuilt from its weights, for saving; ``None`` for the others)."""
    import joblib
    from tqdm import tqdm

    ds, cfg, _ = _adapt(ds, cfg)
    jobs = [(name, i) for name in models for i in range(len(folds))]
    last = len(folds) - 1
    with dask_backend(scheduler, scatter=[ds]):
        gen = joblib.Parallel(n_jobs=-1, batch_size=1, pre_dispatch="all",
                              return_as="generator")(
            joblib.delayed(_fold_task_isolated)(name, ds, folds[i], cfg, protocol,
                                                   i == last)
            for name, i in jobs)
        results = list(tqdm(gen, total=len(jobs), desc=f"{protocol} on {scheduler}",
                            unit="training", disable=not progress))
    return _collect(models, ds, cfg, jobs, results, last)


# the trainings of a comparison that take longest go first, so that no worker is left with
# a long one at the end (measured here: an LSTM fold ~60 s, a CNN fold ~10 s)
_SLOW_FIRST = {"lstm": 0, "cnn_gru": 1}


def _local_folds(models: list[str], ds: Dataset, folds: list[Fold], cfg: TrainConfig,
                 protocol: str, jobs: int, progress: bool = True) -> dict:
    """Every (model, fold) training in ``jobs`` local worker processes side by side
    (:func:`ser.cluster.run_tasks`); returns what :func:`_cluster_folds` returns. Each training
    is seeded (``train_one``) and alone in its process, as in a sequential run: the same
    figures (measured here: the four-model comparison 1.48x faster with 2 processes on 2 cores,
    benchmarks/bench_comparison.py)."""
    from ser.cluster import run_tasks
    ds, cfg, _ = _adapt(ds, cfg)
    last = len(folds) - 1
    jobs_list = sorted(((name, i) for name in models for i in range(len(folds))),
                       key=lambda j: _SLOW_FIRST.get(j[0], 2))
    tasks = [(name, i, ds, folds[i], cfg, protocol, i == last) for name, i in jobs_list]
    done = dict(run_tasks(_keyed_fold_task, tasks, jobs=jobs, backend=None, scheduler=None,
                          see=None, desc=f"{protocol}, {jobs} processes", progress=progress,
                          librosa=False, batch=1, unit="training"))
    return _collect(models, ds, cfg, jobs_list, [done[j] for j in jobs_list], last)


def _keyed_fold_task(name: str, i: int, *args) -> tuple:
    """:func:`_fold_task` with its (model, fold) key, for results that arrive in any order."""
    return (name, i), _fold_task(name, *args)


def _collect(models, ds, cfg, jobs_list, results, last) -> dict:
    by_job = dict(zip(jobs_list, results))
    out = {name: [] for name in models}
    for name in models:
        for i in range(last + 1):
            r = by_job[(name, i)]
            model = norm = None
            if i == last:
                norm, weights = r[7:]
                model = build_model(name, (int(ds.X.shape[1]), 1), cfg.ensemble)
                model.set_weights(weights)
            out[name].append((tuple(r[:7]), model, norm))
    return out


def evaluate_model(model_name: str, ds: Dataset, folds: list[Fold], cfg: TrainConfig, *,
                   protocol: str, subset: str, progress: bool = True,
                   fold_results: list | None = None) -> dict:
    """Train ``model_name`` on every fold; returns the record plus pooled predictions.

    ``fold_results``: the folds' results computed elsewhere (:func:`_cluster_folds`).
    """
    from tqdm import tqdm
    norm_asked = cfg.norm
    ds, cfg, adaptation = _adapt(ds, cfg)
    per_fold, hists, y_all, p_all, epochs, secs, uars_c = [], [], [], [], [], [], []
    proba_all = []
    last_model, last_norm = None, None
    for i, fold in enumerate(tqdm(folds, desc=f"{model_name} [{protocol}]", unit="fold",
                                  disable=not progress or len(folds) == 1
                                  or fold_results is not None)):
        (m, hist, y_true, pred, n_epochs, s, probas), model, norm = (
            _fold_result(model_name, ds, fold, cfg, protocol) if fold_results is None
            else fold_results[i])
        if protocol == "corpus":
            uars_c.append(m)
        per_fold.append(m)
        hists.append(hist)
        y_all.append(y_true)
        p_all.append(pred)
        proba_all.append(probas)
        epochs.append(n_epochs)
        secs.append(s)
        last_model, last_norm = model, norm
    agg = {k: float(np.mean([m[k] for m in per_fold])) for k in per_fold[0]}
    rec = {"model": model_name, "protocol": protocol, "subset": subset, "feature": ds.feature,
           "adaptation": adaptation, "augmentation": ds.copies, "ensemble": cfg.ensemble,
           **agg,
           "epochs": float(np.mean(epochs)), "train_seconds": float(np.sum(secs)),
           "seconds_per_epoch": float(np.sum(secs) / max(1, np.sum(epochs) * cfg.ensemble)),
           "seed": cfg.seed, "batch_size": cfg.batch_size,
           "norm": norm_asked,
           "n_train": int(np.mean([len(f.train) for f in folds])),
           "n_test": int(np.sum([len(f.test) for f in folds])),
           "versions": library_versions()}
    if protocol == "original":
        rec["test_set_as_validation"] = True
    if protocol == "speaker":
        rec["uar_std"] = float(np.std([m["uar"] for m in per_fold]))
        rec["folds"] = [{"name": f.name, **f.info, **_speaker_names(ds, f.info), **m}
                        for f, m in zip(folds, per_fold)]
    if protocol == "corpus":
        f = folds[0]
        rec["train_corpus"], rec["test_corpus"] = f.name.split("->")
    y_true = np.concatenate(y_all)
    proba = np.concatenate([p for p, _ in proba_all])
    calibrated = None
    if all(c is not None for _, c in proba_all):
        calibrated = np.concatenate([c for _, c in proba_all])
        rec["selective"] = selective(calibrated, y_true)   # what --min-confidence P leaves
    return {"record": rec, "histories": hists, "y_true": y_true,
            "y_pred": np.concatenate(p_all), "proba": proba, "calibrated": calibrated,
            "model": last_model, "norm": last_norm}


def _named(ds: Dataset, actors) -> list[str] | None:
    """The names the data gives ``actors`` (a CSV corpus's speakers), or None when they are
    only their numbers (RAVDESS, TESS): records and sidecars of those stay as they were."""
    names = ds.speaker_names(actors)
    return None if names == [f"{int(a):02d}" for a in actors] else names


def _speaker_names(ds: Dataset, info: dict) -> dict:
    """A fold's held-out actors by the names the data gives them (``test_speakers``,
    ``val_speakers``), when it names them; else nothing."""
    return {k.replace("actors", "speakers"): _named(ds, v) for k, v in info.items()
            if k.endswith("_actors") and _named(ds, v) is not None}


def run(*, models: list[str], protocol: str, subset: str, feature: str, cfg: TrainConfig,
        features_dir=FEATURES_DIR, media_dir=MEDIA_DIR, k: int = 5,
        train_corpus: str = "ravdess", progress: bool = True,
        scheduler: str | None = None, jobs: int = 1) -> tuple[list[dict], dict]:
    """Train and evaluate ``models`` under ``protocol``; write the reports to ``media_dir``
    (created only once the data is loaded and split: a run refused at once leaves no folder).

    With ``scheduler`` (a Dask scheduler address) the trainings run on that cluster; else,
    with ``jobs`` > 1, in that many local processes side by side (the same figures).

    Returns
    -------
    records : list of dict
        One results record per model (as written to ``results.json``).
    outs : dict
        Per model, what :func:`evaluate_model` returns (its last fold's model included).
    """
    ds = load_dataset(feature, subset, features_dir=features_dir, augment=cfg.augment)
    folds = make_folds(ds, protocol, cfg.seed, k=k, train_corpus=train_corpus)
    media_dir = Path(media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    outs = {}
    n_trainings = len(models) * len(folds)
    remote = (_cluster_folds(models, ds, folds, cfg, protocol, scheduler, progress)
              if scheduler else
              _local_folds(models, ds, folds, cfg, protocol, min(jobs, n_trainings), progress)
              if jobs > 1 and n_trainings > 1 else {})
    for name in models:
        outs[name] = evaluate_model(name, ds, folds, cfg, protocol=protocol, subset=subset,
                                    progress=progress, fold_results=remote.get(name))
        r = outs[name]["record"]
        print(f"{name:13s} {protocol:8s} {subset:18s} {feature:8s} acc {r['accuracy']:.3f} "
              f"UAR {r['uar']:.3f}" + (f" ± {r['uar_std']:.3f}" if "uar_std" in r else "")
              + (f" restricted {r['uar_restricted']:.3f} 8-way {r['uar_8way']:.3f}"
                 if protocol == "corpus" else "")
              + f"  {r['epochs']:.0f} epochs, {r['train_seconds']:.0f} s")
    label = f"{protocol}" + (" (test-set-as-validation)" if protocol == "original" else "")
    for name, o in outs.items():
        tag = f"{name}, {label}, {subset}, {feature}"
        write_model_reports(o, media_dir, f"{name}_", tag)
    primary = "improved_cnn" if "improved_cnn" in outs else models[0]
    o = outs[primary]
    write_model_reports(o, media_dir, "", f"{primary}, {label}, {subset}, {feature}")
    if len(outs) > 1:   # a comparison: kept until the next comparison run
        plot_comparison({n: o["histories"][0] for n, o in outs.items()},
                        media_dir / "model_comparison.png",
                        f"validation accuracy per epoch: {label}, {subset}, {feature}"
                        + (f" ({folds[0].name})" if len(folds) > 1 else ""))
    records = update_results(media_dir / "results.json", [o["record"] for o in outs.values()])
    with atomic_path(media_dir / "results.md") as tmp:
        tmp.write_text(results_markdown(records))
    return [o["record"] for o in outs.values()], outs


def train_final(model_name: str, *, subset: str, feature: str, cfg: TrainConfig,
                out: Path, features_dir=FEATURES_DIR, epochs: int | None = None,
                protocol_record: dict | None = None,
                exclude_actors: list[int] | tuple[int, ...] = ()) -> dict:
    """Train on every row of ``subset`` (no test part; none of ``exclude_actors``) and save
    the model with its sidecar.

    The number of epochs is ``epochs`` if given, else found first by early stopping on two
    held-out RAVDESS actors (the run is then repeated on all rows for that many epochs).
    """
    ds = load_dataset(feature, subset, features_dir=features_dir, augment=cfg.augment)
    if exclude_actors:
        ds = ds.take(np.flatnonzero(~np.isin(ds.meta["actor"], list(exclude_actors))))
    norm_asked = cfg.norm
    # with adaptation the population statistics ship as the fallback and as the prior for a
    # user's few utterances
    prior = fit_normalization(ds.X, "global") if adaptation_of(cfg.norm) == "speaker" else None
    ds, cfg, adaptation = _adapt(ds, cfg)
    held = []
    if epochs is None:
        # median best epoch of early stopping on whole held-out actors, over 3 draws
        n_actors = len(set(ds.meta["actor"].tolist()))
        folds = split_speaker(ds, cfg.seed, k=max(2, min(5, n_actors)))[:3]
        best, held = [], []
        for f in folds:
            probe = Fold(np.concatenate([f.train, f.test]), f.val, f.val, "probe")
            # one model per probe (an ensemble's members stop at about the same epoch)
            single = replace(cfg, ensemble=1)
            m, h, n, _ = train_one(model_name, ds, probe, single)
            best.append(h["best_epoch"])
            held.append((predict_proba(m, ds.X[f.val], n), ds.y[f.val]))
        epochs = int(np.median(best))
        held_out = "; ".join(" + ".join(ds.speaker_names(f.info["val_actors"])) for f in folds)
        print(f"{model_name}: {epochs} epochs (median of {best}, early stopping on held-out "
              f"speakers {held_out})")
    fcfg = replace(cfg, epochs=int(epochs))
    everything = Fold(np.arange(len(ds)), None, np.arange(0), "all")
    model, hist, norm, secs = train_one(model_name, ds, everything, fcfg, epochs_fixed=True)
    corpora = sorted(set(ds.meta["corpus"].tolist()))
    actors = sorted(set(ds.meta["actor"].tolist()))
    speakers = _named(ds, actors)
    sidecar = make_sidecar(
        model=model_name, feature=feature, input_shape=[int(ds.X.shape[1]), 1],
        normalization=prior if adaptation == "speaker" else norm, adaptation=adaptation,
        trained_on={"subset": subset, "corpora": corpora, "rows": int(len(ds)),
                    "actors": actors, **({"speakers": speakers} if speakers else {})},
        training={"epochs": int(epochs), "batch_size": cfg.batch_size,
                  "augment": cfg.augment, "ensemble": cfg.ensemble,
                  "learning_rate": cfg.learning_rate, "seed": cfg.seed,
                  "norm": norm_asked,
                  "seconds": round(secs, 1)},
        protocol="all data (no test part)", metrics=protocol_record or {})
    sidecar["calibration"] = _calibration((protocol_record or {}).get("speaker", {}), held)
    return _save(model, out, sidecar, f" ({len(ds)} rows, {epochs} epochs, {secs:.0f} s)")


def _calibration(speaker: dict, held: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The all-data model's temperature: the mean of the temperatures fitted on the
    validation actors of its recipe's ``speaker`` protocol folds (media/results.json), else
    one fitted on the actors the epoch probes held out, else none (1.0)."""
    if "temperature" in speaker:
        return {"temperature": speaker["temperature"],
                "fitted_on": "validation actors of the speaker protocol's folds (and their "
                             "augmented copies, with --augment)",
                **{k: speaker[k] for k in ("ece", "ece_calibrated") if k in speaker}}
    if held:
        p, y = np.concatenate([p for p, _ in held]), np.concatenate([y for _, y in held])
        t = fit_temperature(p, y)
        return {"temperature": t, "fitted_on": "actors held out by the epoch probes "
                "(single models)", "ece": ece(p, y), "ece_calibrated": ece(
                    apply_temperature(p, t), y)}
    return {"temperature": 1.0, "fitted_on": "none"}


def _save(model, out: Path, sidecar: dict, detail: str = "") -> dict:
    """Save the model with its sidecar (its folder made if needed: a run folder is made when
    its first file is written); returns the sidecar as written."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    kept = save_model(model, out, sidecar)
    print(f"saved {out} and {sidecar_path(out)}{detail}"
          + (f"; the previous model is kept as {kept}" if kept else ""))
    return json.loads(sidecar_path(out).read_text())


def protocol_records(media_dir: Path, model: str, subset: str, feature: str, norm: str,
                     augment: int, ensemble: int) -> dict:
    """The speaker- and corpus-protocol figures of this configuration that
    ``media_dir/results.json`` has, by protocol (``speaker``, ``corpus ravdess->tess``, ...):
    what an all-data model's sidecar carries, its temperature included (:func:`_calibration`)."""
    path = Path(media_dir) / "results.json"
    if not path.exists():
        return {}
    adaptation = adaptation_of(norm)
    out = {}
    for r in json.loads(path.read_text()):
        if (r["model"], r["subset"], r["feature"], r.get("adaptation"),
                r.get("augmentation", 0), r.get("ensemble", 1)) != \
                (model, subset, feature, adaptation, augment, ensemble):
            continue
        if r["protocol"] == "speaker":
            out["speaker"] = {k: r[k] for k in ("uar", "uar_std", "accuracy", "macro_f1",
                                                "temperature", "ece", "ece_calibrated",
                                                "selective") if k in r}
        elif r["protocol"] == "corpus":
            out[f"corpus {r['train_corpus']}->{r['test_corpus']}"] = {
                k: r[k] for k in ("uar_restricted", "uar_8way")}
    return out


def save_trained(model, norm, ds: Dataset, name: str, out: Path, *, protocol: str,
                 subset: str, record: dict, cfg: TrainConfig):
    """Save the model of an evaluation run (its last fold), with the run's figures."""
    sidecar = make_sidecar(
        model=name, feature=ds.feature, input_shape=[int(ds.X.shape[1]), 1],
        normalization=norm, adaptation="none",
        trained_on={"subset": subset, "rows": record["n_train"]},
        training={"batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
                  "seed": cfg.seed, "norm": cfg.norm, "epochs": record["epochs"],
                  "augment": cfg.augment, "ensemble": cfg.ensemble},
        protocol=protocol,
        metrics={k: record[k] for k in ("accuracy", "uar", "macro_f1", "weighted_f1")})
    _save(model, out, sidecar)
