"""Operators: Stylize Scene (modal), Cancel, Resume, Import Result, Show Stylized / Originals,
Add/Remove Style.

Stylize Scene, step by step:
1. gathers the scene settings into a `Request` and validates it before touching anything (at
   least one style image that exists, cameras or objects for the rig, a writable output folder,
   a worker Python that exists); a problem is reported as one sentence and nothing changes;
2. writes the job folder (job.json, copies of the style images in JOB/styles/);
3. captures the training views: in the UI in a background Blender (a copy of the file is saved
   into the job and rendered there, so the interface stays responsive and the user's scene is not
   touched at all), else in this process with `capture.capture_views` (which restores every
   setting it changes);
4. starts the worker and polls it on a timer (stage, progress, ETA, preview in the INS panel);
   Esc or Cancel stops it with a checkpoint (Resume continues it);
5. when done, imports the mesh (one undo step) if "Auto Import" is on.
In background mode (`blender -b`, the bpy module) `execute` does the same, blocking.
"""

import os
import shutil
from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, StringProperty
from bpy.types import Operator, OperatorFileListElement

from ins_core.errors import InputError
from ins_core.job import JobPaths, JobSpec

from . import job_run, jobs, worker_launch
from . import preferences as prefs_module
from .job_request import (
    can_capture_in_background,
    capture_in_process,
    capture_subprocess_argv,
    create_job,
    request_from_scene,
    validate,
)
from .registration import class_registrar

def _remove_new_job(job: JobPaths | None) -> None:
    """Remove a job folder this operator just created (nothing else is ever deleted)."""
    if job is not None and (job.root / "job.json").is_file():
        shutil.rmtree(job.root, ignore_errors=True)


def _unexpected(error: Exception) -> str:
    import traceback

    traceback.print_exc()
    return f"INS stopped on an unexpected error ({type(error).__name__}: {error}); the details are in the system console."


# ---------------------------------------------------------------------------------------------
# Operators.
# ---------------------------------------------------------------------------------------------


class INS_OT_stylize_scene(Operator):
    """Capture the scene, stylize it with the chosen style images in a background worker, and import the result"""

    bl_idname = "ins.stylize_scene"
    bl_label = "Stylize Scene"
    # UNDO without REGISTER: the finished import is one undo step, but Repeat Last and the
    # Adjust Last Operation panel cannot re-run a job that takes minutes (they would call
    # execute(), which blocks the interface until the job ends).
    bl_options = {"UNDO"}

    resume: BoolProperty(name="Resume", default=False, options={"HIDDEN", "SKIP_SAVE"},
                         description="Continue the latest job of the scene instead of starting a new one")

    _run = None
    _timer = None
    _outputs = ()
    _scene_name = ""

    @classmethod
    def poll(cls, context):
        scene = getattr(context, "scene", None)
        return scene is not None and hasattr(scene, "ins") and jobs.active_run(scene) is None

    # -- set-up shared by invoke and execute ---------------------------------------------------

    def _prepare(self, context, background_capture: bool):
        """Validate, write the job, capture (in process or planned in background); returns a JobRun.

        Raises InputError / WorkerError; on failure the new job folder is removed again.
        """
        scene = context.scene
        if self.resume:
            return self._prepare_resume(context)
        request = request_from_scene(context)
        validate(request)
        job = None
        try:
            job = create_job(request)
            capture_argv = None
            if background_capture:
                capture_argv = capture_subprocess_argv(request, job)
            else:
                wm = context.window_manager
                wm.progress_begin(0, 1)
                try:
                    scene.ins.status = "CAPTURING"
                    capture_in_process(request, job, progress=lambda done, total: wm.progress_update(done / max(1, total)))
                finally:
                    wm.progress_end()
            run = job_run.JobRun(job.root, request.python, bundled=request.bundled, capture_argv=capture_argv,
                              scene_name=scene.name)
            run.start()
        except BaseException:
            _remove_new_job(job)
            raise
        self._outputs = tuple(request.outputs)
        return run

    def _prepare_resume(self, context):
        scene = context.scene
        text = scene.ins.job_dir.strip()
        if not text:
            raise InputError("There is no job to resume; press Stylize Scene to start one.")
        job = JobPaths(Path(bpy.path.abspath(text)))
        if not job.job_json.is_file() or not (job.dataset_dir / "transforms_train.json").is_file():
            raise InputError(f"The job folder '{job.root}' is incomplete (no job.json or captured views); start a new job with Stylize Scene.")
        spec = JobSpec.load(job.job_json)
        python, bundled = prefs_module.worker_python(prefs_module.get(context))
        run = job_run.JobRun(job.root, python, bundled=bundled, scene_name=scene.name).start()
        self._outputs = tuple(spec.outputs)
        return run

    def _fail(self, context, error) -> set:
        message = str(error)
        # Nothing was started: the status stays as it was; the panel shows the sentence.
        context.scene.ins.message = message
        self.report({"ERROR"}, message)
        return {"CANCELLED"}

    def _before(self, context):
        scene = context.scene
        settings = scene.ins
        return settings.status, settings.message

    # -- UI: modal -----------------------------------------------------------------------------

    def invoke(self, context, event):
        scene = context.scene
        if jobs.active_run(scene) is not None:
            self.report({"ERROR"}, "A job is already running for this scene; cancel it first.")
            return {"CANCELLED"}
        status = self._before(context)
        try:
            run = self._prepare(context, can_capture_in_background(context))
        except (InputError, worker_launch.WorkerError) as error:
            context.scene.ins.status, context.scene.ins.message = status
            return self._fail(context, error)
        except Exception as error:  # noqa: BLE001 - a bug: one sentence here, the traceback in the console
            context.scene.ins.status, context.scene.ins.message = status
            return self._fail(context, _unexpected(error))
        self._run = run
        self._scene_name = scene.name
        jobs.add_run(scene, run)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, "INS: job started; Esc cancels.")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        scene = bpy.data.scenes.get(self._scene_name) or context.scene
        if event.type == "ESC" and event.value == "PRESS" and not run.done:
            jobs.cancel_scene(scene) or run.request_cancel()
            self.report({"INFO"}, "INS: cancelling (saving a checkpoint)...")
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            if jobs.poll_scene(scene) is None and not run.done:
                run.update()  # the scene was renamed: keep the run moving anyway
            if run.done:
                context.window_manager.event_timer_remove(self._timer)
                self._timer = None
                return self._finish(scene, run)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        # Blender ends the operator (window closed, file loaded): stop the worker with a checkpoint.
        if self._timer is not None:
            try:
                context.window_manager.event_timer_remove(self._timer)
            except (ValueError, RuntimeError):
                pass
        if self._run is not None and not self._run.done:
            self._run.request_cancel()

    def _finish(self, scene, run) -> set:
        if run.status == "finished":
            message = run.message
            if scene.ins.auto_import and "mesh" in self._outputs:
                from . import importer

                try:
                    obj = importer.import_result(scene, run.job.root)
                    message = f"INS: finished; added '{obj.name}' to '{importer.COLLECTION}'."
                except InputError as error:
                    scene.ins.message = f"INS: finished, but the mesh could not be imported: {error}"
                    self.report({"WARNING"}, scene.ins.message)
                    return {"FINISHED"}
            scene.ins.message = message
            self.report({"INFO"}, message)
            return {"FINISHED"}
        if run.status == "cancelled":
            self.report({"WARNING"}, f"INS: {run.message}")
        else:
            self.report({"ERROR"}, f"INS: {run.message}")
        return {"CANCELLED"}

    # -- scripts and background mode: blocking -------------------------------------------------

    def execute(self, context):
        scene = context.scene
        status = self._before(context)
        try:
            run = self._prepare(context, background_capture=False)
        except (InputError, worker_launch.WorkerError) as error:
            scene.ins.status, scene.ins.message = status
            return self._fail(context, error)
        except Exception as error:  # noqa: BLE001
            scene.ins.status, scene.ins.message = status
            return self._fail(context, _unexpected(error))
        from .batch import _printer

        try:
            run.wait(on_events=_printer(print))
        except KeyboardInterrupt:
            if run.current is not None:
                run.current.cancel()
            run.update()
        jobs.sync_scene(scene, run)
        return self._finish(scene, run)


class INS_OT_cancel(Operator):
    """Stop the running job after the current step; it keeps a checkpoint so Resume continues it"""

    bl_idname = "ins.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        scene = getattr(context, "scene", None)
        return scene is not None and jobs.active_run(scene) is not None

    def execute(self, context):
        if jobs.cancel_scene(context.scene):
            self.report({"INFO"}, "INS: cancelling (saving a checkpoint)...")
            return {"FINISHED"}
        self.report({"WARNING"}, "INS: no job is running for this scene.")
        return {"CANCELLED"}


class INS_OT_import_result(Operator):
    """Add the stylized mesh of a finished job to the 'INS Results' collection"""

    bl_idname = "ins.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    job_dir: StringProperty(name="Job Folder", subtype="DIR_PATH", default="",
                            description="Finished job folder (empty: the scene's latest job)")
    pack_texture: BoolProperty(name="Pack Texture", default=False,
                               description="Store the texture inside the .blend file (the job folder is no longer needed)")

    @classmethod
    def poll(cls, context):
        return getattr(context, "scene", None) is not None

    def execute(self, context):
        from . import importer

        scene = context.scene
        job_dir = self.job_dir.strip() or (scene.ins.job_dir.strip() if hasattr(scene, "ins") else "")
        if not job_dir:
            self.report({"ERROR"}, "There is no finished job to import; run Stylize Scene first or give a job folder.")
            return {"CANCELLED"}
        try:
            obj = importer.import_result(scene, job_dir, pack_texture=self.pack_texture)
        except InputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Added '{obj.name}' to '{importer.COLLECTION}'.")
        return {"FINISHED"}


class INS_OT_show_result(Operator):
    """Show the stylized mesh in place of the objects it was made from, or those objects again (in the viewport and in renders)"""

    bl_idname = "ins.show_result"
    bl_label = "Show Stylized or Originals"
    bl_options = {"REGISTER", "UNDO"}

    stylized: BoolProperty(name="Stylized", default=True,
                           description="On: the stylized mesh, its originals hidden; off: the originals, the mesh hidden")

    @classmethod
    def description(cls, context, properties):
        return ("Show the stylized mesh in place of the objects it was made from" if properties.stylized
                else "Show the objects the stylized mesh was made from, the mesh hidden")

    @classmethod
    def poll(cls, context):
        from .originals import result_in_focus

        return getattr(context, "scene", None) is not None and result_in_focus(context) is not None

    def execute(self, context):
        from .originals import result_in_focus, show

        result = result_in_focus(context)
        count = show(result, context.scene, context.view_layer, self.stylized)
        what = f"'{result.name}' in place of {count} object{'s' if count != 1 else ''}" if self.stylized \
            else f"{count} original object{'s' if count != 1 else ''}, '{result.name}' hidden"
        self.report({"INFO"}, f"INS: showing {what}.")
        return {"FINISHED"}


class INS_OT_add_style(Operator):
    """Add style images (paintings, textures, photos) to the scene's style list"""

    bl_idname = "ins.add_style"
    bl_label = "Add Style Image"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: CollectionProperty(type=OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    image_name: StringProperty(name="Image", default="", options={"SKIP_SAVE"},
                               description="Add a loaded Blender image instead of a file")
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        if self.image_name or self.filepath:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.ins
        added = 0
        if self.image_name:
            image = bpy.data.images.get(self.image_name)
            if image is None:
                self.report({"ERROR"}, f"There is no image named '{self.image_name}'; load it first or pick a file.")
                return {"CANCELLED"}
            item = settings.styles.add()
            item.image = image
            added = 1
        else:
            paths = []
            if self.files and self.directory:
                paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
            if not paths and self.filepath:
                paths = [self.filepath]
            for path in paths:
                item = settings.styles.add()
                item.filepath = path
                added += 1
        if not added:
            self.report({"ERROR"}, "No style image was chosen; pick one or more image files.")
            return {"CANCELLED"}
        settings.active_style_index = len(settings.styles) - 1
        return {"FINISHED"}


class INS_OT_remove_style(Operator):
    """Remove the selected style image from the list (the file stays where it is)"""

    bl_idname = "ins.remove_style"
    bl_label = "Remove Style Image"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        scene = getattr(context, "scene", None)
        return scene is not None and hasattr(scene, "ins") and len(scene.ins.styles) > 0

    def execute(self, context):
        settings = context.scene.ins
        index = min(max(0, settings.active_style_index), len(settings.styles) - 1)
        settings.styles.remove(index)
        settings.active_style_index = max(0, min(index, len(settings.styles) - 1))
        return {"FINISHED"}


CLASSES = (INS_OT_stylize_scene, INS_OT_cancel, INS_OT_import_result, INS_OT_show_result, INS_OT_add_style, INS_OT_remove_style)


register, unregister = class_registrar(CLASSES)
