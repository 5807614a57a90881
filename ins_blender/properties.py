"""Scene settings of the INS add-on (`scene.ins`): inputs for a run and the job's live status.

Inputs: style images (a list of file paths and/or loaded Blender images, each with an animatable
mix weight), mode (NeRF/SDF), quality preset, device, outputs, capture source and its options,
output folder. Status fields (written by the job poller, read by the panel): status, stage,
progress, ETA, last message, preview image name, job folder, the job the INS engine renders.

`style_mix(settings)` gives the normalised weights (None for one style or all zeros), so
keyframing the weights morphs between styles over an animation.
"""

import os
import sys
import tempfile
from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

from . import presets

MODES = [("NERF", "NeRF", "Volumetric radiance field: best for fuzzy or thin detail"),
         ("SDF", "SDF", "Signed distance field: clean surfaces and the best meshes")]
DEVICES = [("PREFERENCES", "Default", "The device chosen in the add-on preferences"),
           ("AUTO", "Auto", "The GPU when the worker has one (CUDA, then Apple MPS), else the CPU"),
           ("CPU", "CPU", "Always the CPU (slow but works everywhere)"),
           ("GPU", "GPU", "The GPU (CUDA, or MPS on a Mac); fails when the worker has none")]
OUTPUTS = [("MESH", "Textured Mesh", "A mesh with a baked stylized texture in the 'INS Results' collection"),
           ("RENDER_ENGINE", "Neural Render", "Render the stylized field from any camera with the INS render engine"),
           ("BOTH", "Both", "The mesh and the neural render")]
SHADINGS = [("LIT", "Lit", "A Principled BSDF with the texture as its Base Color: the mesh takes the scene's lights, as "
                           "any imported textured mesh does"),
            ("CAPTURED", "As Captured", "An Emission of the texture for the camera: the colours exactly as stylized whatever "
                                        "the lights, as the INS engine shows them (View Transform: Standard); to every "
                                        "other ray the Lit material, so it lights nothing around it")]
SOURCES = [("CAMERAS", "Scene Cameras", "Every camera of a collection (or of the scene)"),
           ("ANIMATION", "Camera Animation", "The active camera at each frame of the scene's frame range"),
           ("AUTO_RIG", "Automatic Rig", "Cameras placed automatically around the objects")]
# The painting's detail the style is matched at (the core's `style_detail`).
DETAILS = [("AUTO", "Auto", "The painting's own detail where the training views can hold it (the loss network sees them at "
                            "no more than 1.6x their size, so they can from 40 px up), else as a view shows it (the default)"),
           ("VIEW", "View", "Match the painting as a view of the training size can show it: broader, softer strokes that "
                            "hold still from view to view"),
           ("FULL", "Full", "Match the painting's own finest texture at the loss network's size, even where the training "
                            "views are too small to hold it (there it comes out as speckle that flickers from view to view)")]
STATUSES = [("IDLE", "Idle", ""), ("CAPTURING", "Capturing", ""), ("RUNNING", "Running", ""),
            ("CANCELLING", "Cancelling", ""), ("FINISHED", "Finished", ""),
            ("CANCELLED", "Cancelled", ""), ("FAILED", "Failed", "")]
BUSY = {"CAPTURING", "RUNNING", "CANCELLING"}
# Rays a pixel in the INS engine's final renders: a k x k grid in each pixel.
RENDER_SAMPLES = [(str(n * n), str(n * n), f"{n} x {n} rays through each pixel, their colours averaged" if n > 1
                   else "One ray through each pixel's centre (no anti-aliasing)") for n in (1, 2, 3, 4)]
RENDER_SAMPLES_DEFAULT = "4"


class INS_StyleItem(PropertyGroup):
    """One style: an image file on disk, or an image loaded in Blender; plus its mix weight."""

    filepath: StringProperty(name="Style Image", subtype="FILE_PATH",
                             description="Path of a style image (a painting, a texture, a photo)")
    image: PointerProperty(name="Image", type=bpy.types.Image,
                           description="Or pick an image already loaded in Blender")
    weight: FloatProperty(name="Weight", default=1.0, min=0.0, soft_max=1.0,
                          description="Share of this style in the mix (normalised over all styles; keyframe it to morph styles over time)")

    def display_name(self) -> str:
        if self.image is not None:
            return self.image.name
        return os.path.basename(bpy.path.abspath(self.filepath)) or "(no image)"


class INS_SceneSettings(PropertyGroup):
    # -- inputs --------------------------------------------------------------------------------
    styles: CollectionProperty(type=INS_StyleItem, description="The paintings to stylize with; several train one model that can mix them")
    active_style_index: IntProperty(name="Active Style", default=0, min=0, description="The style selected in the list")
    mode: EnumProperty(name="Mode", items=MODES, default="NERF", description="The neural field fitted to the scene's views before it is stylized")
    preset: EnumProperty(name="Quality", items=presets.enum_items(), default="PREVIEW",
                          description="How many and how large the training views are, and how long each stage trains")
    stroke_scale: FloatProperty(name="Stroke Scale", default=1.0, min=0.25, max=4.0, soft_min=0.5, soft_max=3.0, step=10,
                                description="How big the painting's brush strokes are on the scene: 1 keeps the painting's "
                                            "own scale against a view, 2 makes them twice as big, 0.5 half as big")
    palette_weight: FloatProperty(name="Palette", default=2.0, min=0.0, max=10.0, soft_max=2.0, step=10,
                                  description="Make the scene reach the painting's range of colours while training, so it is painted "
                                              "in the painting's own colours rather than a stretched copy of the scene's (2, the "
                                              "default); 0 leaves the colours to the match after training")
    palette_spread_auto: BoolProperty(name="Auto Colour Spread", default=True,
                                      description="Let each painting choose how far the colour match after training stretches the "
                                                  "scene's colour differences (the one whose views best match the painting's texture); "
                                                  "off: the Colour Spread value")
    palette_spread: FloatProperty(name="Colour Spread", default=1.0, min=0.0, max=1.0, step=10, subtype="FACTOR",
                                  description="With Auto off: how far the colour match after training stretches the scene's colour "
                                              "differences to the painting's range: 1 all the way, 0 not at all (the painting's "
                                              "colours, at most the scene's own contrast)")
    style_detail: EnumProperty(name="Detail", items=DETAILS, default="AUTO",
                               description="Which of the painting's detail the scene is asked for while training")
    device: EnumProperty(name="Device", items=DEVICES, default="PREFERENCES", description="Where the worker trains")
    outputs: EnumProperty(name="Output", items=OUTPUTS, default="BOTH", description="What the job gives back")
    keep_unseen: BoolProperty(name="Keep Unseen Surfaces", default=False,
                              description="Keep the mesh's surfaces no training view sees (the walls of hollows inside objects, "
                                          "undersides); off, they are left out, so the faces and the texture go to what the views "
                                          "showed and the mesh is open where nothing was seen")
    mesh_smoothing: IntProperty(name="Mesh Smoothing", default=presets.core_presets.MESH_SMOOTH_ITERATIONS, min=0, soft_max=100,
                                description="Rounds of smoothing of the mesh's surface: a neural field's surface comes out bumpy, "
                                            "and the bumps, lit, read as grain; smoothing takes them away and keeps the shape's "
                                            "size. 0: the surface as extracted")
    mesh_shading: EnumProperty(name="Mesh Shading", items=SHADINGS, default="LIT",
                               description="The imported mesh's material")
    capture_source: EnumProperty(name="Views From", items=SOURCES, default="AUTO_RIG",
                                 description="Where the cameras of the training views come from")
    camera_collection: PointerProperty(name="Cameras", type=bpy.types.Collection,
                                       description="Use the cameras of this collection (empty: every camera of the scene)")
    only_selected: BoolProperty(name="Selected Only", default=False,
                                description="Frame and bound only the selected objects (the others still show in the views)")
    n_views: IntProperty(name="Views", default=0, min=0, soft_max=200,
                         description="Cameras of the automatic rig. 0: the quality preset's number")
    hemisphere: BoolProperty(name="Hemisphere", default=True,
                             description="Automatic rig: cameras only in the upper hemisphere, above the objects (for objects standing on the ground)")
    capture_resolution: IntProperty(name="View Size", default=0, min=0, soft_max=1024, subtype="PIXEL",
                                    description="Longer side of the training views in pixels. 0: the quality preset's size")
    capture_samples: IntProperty(name="Samples", default=0, min=0, soft_max=512,
                                 description="Cycles samples per training view. 0: the quality preset's number")
    output_dir: StringProperty(name="Output Folder", subtype="DIR_PATH", default="",
                               description="Where job folders go (empty: 'ins_jobs' next to the .blend file, or the temporary folder for an unsaved file)")
    auto_import: BoolProperty(name="Auto Import", default=True,
                              description="Add the stylized mesh to the scene when the job finishes")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Turns the automatic rig and starts the training's random draws: another seed gives "
                                  "another take on the same painting. The same seed repeats a job exactly only with the "
                                  "worker's thread count fixed (INS_WORKER_THREADS)")

    # -- status (written by the job poller) --------------------------------------------------
    status: EnumProperty(name="Status", items=STATUSES, default="IDLE")
    stage: StringProperty(name="Stage", default="")
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR",
                            description="How far the running stage has come (written by the job's background process)")
    eta_text: StringProperty(name="Time Left", default="")
    message: StringProperty(name="Message", default="")
    preview_image: StringProperty(name="Preview Image", default="")
    job_dir: StringProperty(name="Job Folder", subtype="DIR_PATH", default="",
                            description="The folder of the latest job")
    render_job_dir: StringProperty(name="Render Job", subtype="DIR_PATH", default="",
                                   description="Finished job folder the INS render engine renders (empty: the latest job)")
    field_object: PointerProperty(
        name="Placement", type=bpy.types.Object,
        description="The object the stylized field follows in the INS engine: move, turn or scale it (evenly) and the neural "
                    "render goes with it. Import Result sets the imported mesh; empty: the field stays where the scene was captured")
    render_samples: EnumProperty(
        name="Render Samples", default=RENDER_SAMPLES_DEFAULT, items=RENDER_SAMPLES,
        description="Rays a pixel in a final render (F12), for smooth edges; the time grows with them")
    viewport_samples: EnumProperty(
        name="Viewport Samples", default="1", items=RENDER_SAMPLES,
        description="Rays a pixel in the viewport preview's last refinement, once the view is still "
                    "(1: the full-size preview is the last; through a camera with Depth of Field, 16 at least)")

    @property
    def busy(self) -> bool:
        return self.status in BUSY


CLASSES = (INS_StyleItem, INS_SceneSettings)


def settings(scene) -> INS_SceneSettings:
    return scene.ins


def style_mix(settings_or_weights) -> list[float] | None:
    """Normalised weights, one per style; None for a single style or when all are zero."""
    if hasattr(settings_or_weights, "styles"):
        weights = [max(0.0, float(item.weight)) for item in settings_or_weights.styles]
    else:
        weights = [max(0.0, float(w)) for w in settings_or_weights]
    total = sum(weights)
    if len(weights) < 2 or total <= 0.0:
        return None
    mix = [w / total for w in weights]
    mix[-1] = max(0.0, 1.0 - sum(mix[:-1]))  # sums to 1 within the job's tolerance
    return mix


def output_root(settings) -> Path:
    """The folder new jobs go in: the setting, else //ins_jobs, else <temp>/ins_jobs."""
    if settings.output_dir.strip():
        return Path(bpy.path.abspath(settings.output_dir.strip()))
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//ins_jobs"))
    return Path(tempfile.gettempdir()) / "ins_jobs"


def device_for_job(settings, preferences_device: str = "AUTO") -> str:
    """job.json device: auto, cpu, cuda (mps on a Mac) from the scene / preferences choice."""
    choice = settings.device if settings.device != "PREFERENCES" else preferences_device
    if choice == "CPU":
        return "cpu"
    if choice == "GPU":
        return "mps" if sys.platform == "darwin" else "cuda"
    return "auto"


def outputs_for_job(settings) -> list[str]:
    return {"MESH": ["mesh"], "RENDER_ENGINE": ["render_engine"]}.get(settings.outputs, ["mesh", "render_engine"])


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ins = PointerProperty(type=INS_SceneSettings, name="INS")


def unregister() -> None:
    if hasattr(bpy.types.Scene, "ins"):
        del bpy.types.Scene.ins
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
