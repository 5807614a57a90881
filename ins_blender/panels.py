"""The INS tab in the 3D viewport's sidebar (N-panel), and a panel for the INS render engine.

Main panel: style images (list with weights, add/remove, a file or a loaded image each), mode,
quality preset with its time estimate (measured here, else rough), output, device, Stylize Scene / Cancel.
Every label fits the sidebar at its default width (LINE characters): short names, the long
explanations in the properties' tooltips, long messages wrapped into short lines.
Sub-panels: Capture (where the views come from, output folder), Job (status, stage, progress bar,
time left, last message, live preview, Resume / Import Result / open folder), Render (which job
the INS engine renders, and how to get exact colours).
"""

from __future__ import annotations

import bpy
from bpy.types import Panel, UIList

from .registration import class_registrar
from . import estimates, preferences, presets, render_client
from .preferences import _wrap
from .properties import BUSY, STATUSES, device_for_job, outputs_for_job

LINE = 28  # characters of a label that fit the sidebar at its default width
STATUS_LABELS = {key: label for key, label, _ in STATUSES}
STATUS_ICONS = {"IDLE": "NONE", "CAPTURING": "RENDER_STILL", "RUNNING": "PLAY", "CANCELLING": "PAUSE",
                "FINISHED": "CHECKMARK", "CANCELLED": "CANCEL", "FAILED": "ERROR"}


class INS_UL_styles(UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        row = layout.row(align=True)
        icon_value = 0
        if item.image is not None:
            try:
                icon_value = layout.icon(item.image)
            except (TypeError, RuntimeError):
                icon_value = 0
        if icon_value:
            row.label(text=item.display_name(), icon_value=icon_value)
        else:
            row.label(text=item.display_name(), icon="IMAGE_DATA")
        row.prop(item, "weight", text="", emboss=False)  # like Blender's own lists (shape keys)


def _column(layout, lines: list[str], icon: str = "") -> None:
    """Short lines close together; `icon` before the first one, the others indented to match."""
    col = layout.column(align=True)
    col.scale_y = 0.8
    for i, line in enumerate(lines):
        col.label(text=line, icon=(icon if i == 0 else "BLANK1") if icon else "NONE")


def _lines(layout, text: str, max_lines: int = 10, icon: str = "") -> None:
    """Long text as short lines (labels are cut, not wrapped, at the sidebar's width)."""
    _column(layout, _wrap(text, LINE)[:max_lines], icon)


def _settings(context):
    scene = getattr(context, "scene", None)
    return getattr(scene, "ins", None) if scene is not None else None


class _INSPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "INS"

    @classmethod
    def poll(cls, context):
        return _settings(context) is not None


class VIEW3D_PT_ins(_INSPanel, Panel):
    bl_idname = "VIEW3D_PT_ins"
    bl_label = "INS Stylize"

    def draw(self, context):
        layout = self.layout
        settings = _settings(context)
        busy = settings.status in BUSY

        layout.label(text="Style Images")
        row = layout.row()
        row.template_list("INS_UL_styles", "", settings, "styles", settings, "active_style_index", rows=3)
        col = row.column(align=True)
        col.operator("ins.add_style", icon="ADD", text="")
        col.operator("ins.remove_style", icon="REMOVE", text="")
        if 0 <= settings.active_style_index < len(settings.styles):
            item = settings.styles[settings.active_style_index]
            box = layout.box()
            box.prop(item, "filepath", text="File")
            box.prop(item, "image", text="Or Image")
            box.prop(item, "weight")

        layout.separator()
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(settings, "mode", expand=True)
        layout.prop(settings, "preset")
        # This machine's measured speed when there is one (the worker records it), else the rough ranges.
        device = device_for_job(settings, preferences.get().device)
        preset = presets.get(settings.preset)
        view_size = presets.scene_view_size(preset, context.scene.render, settings.capture_resolution)
        _column(layout, estimates.estimate_lines(preset, settings.mode.lower(), device, view_size=view_size), "TIME")
        layout.prop(settings, "stroke_scale", text="Strokes")
        layout.prop(settings, "palette_weight", text="Palette")
        row = layout.row(align=True, heading="Colour Spread")
        row.prop(settings, "palette_spread_auto", text="Auto")
        value = row.row(align=True)
        value.active = not settings.palette_spread_auto
        value.prop(settings, "palette_spread", text="")
        layout.prop(settings, "style_detail", text="Detail", expand=True)
        layout.prop(settings, "outputs")
        unseen = layout.row()
        unseen.active = "mesh" in outputs_for_job(settings)
        unseen.prop(settings, "keep_unseen", text="Keep Unseen")
        smoothing = layout.row()
        smoothing.active = unseen.active
        smoothing.prop(settings, "mesh_smoothing", text="Smoothing")
        shading = layout.row()
        shading.active = unseen.active
        shading.prop(settings, "mesh_shading", text="Shading")
        layout.prop(settings, "device")

        layout.use_property_split = False
        row = layout.row(align=True)
        row.scale_y = 1.5
        if busy:
            row.operator("ins.cancel", icon="CANCEL", text="Cancel")
        else:
            row.operator("ins.stylize_scene", icon="BRUSH_DATA", text="Stylize Scene")


class VIEW3D_PT_ins_capture(_INSPanel, Panel):
    bl_idname = "VIEW3D_PT_ins_capture"
    bl_label = "Capture"
    bl_parent_id = "VIEW3D_PT_ins"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = _settings(context)
        preset = presets.get(settings.preset)
        layout.prop(settings, "capture_source")
        if settings.capture_source == "CAMERAS":
            layout.prop(settings, "camera_collection")
        elif settings.capture_source == "AUTO_RIG":
            layout.prop(settings, "n_views")
            layout.prop(settings, "hemisphere")
        layout.prop(settings, "only_selected")
        layout.prop(settings, "capture_resolution")
        layout.prop(settings, "capture_samples")
        # What 0 means, in the preset's numbers (the tooltips say it in words).
        views = f"{preset.capture_views} views, " if settings.capture_source == "AUTO_RIG" else ""
        _column(layout, [f"0: preset ({preset.label})", f"{views}{preset.capture_resolution} px",
                         f"{preset.capture_samples} samples"], "INFO")
        layout.prop(settings, "output_dir")
        layout.prop(settings, "auto_import")
        layout.prop(settings, "seed")


class VIEW3D_PT_ins_job(_INSPanel, Panel):
    bl_idname = "VIEW3D_PT_ins_job"
    bl_label = "Job"
    bl_parent_id = "VIEW3D_PT_ins"

    def draw(self, context):
        layout = self.layout
        settings = _settings(context)
        status = settings.status
        layout.label(text=STATUS_LABELS.get(status, status), icon=STATUS_ICONS.get(status, "NONE"))
        if settings.eta_text:
            layout.label(text=settings.eta_text, icon="TIME")
        if status in BUSY or status == "FINISHED":
            # "Pre-training 120/1500, PSNR 25.1 dB": the step in the bar, the figure below it.
            text, _, figure = (settings.stage or status.capitalize()).partition(", ")
            if hasattr(layout, "progress"):
                layout.progress(factor=settings.progress, type="BAR", text=text)
            else:
                layout.prop(settings, "progress", text=text, slider=True)
            if figure:
                layout.label(text=figure)
        if settings.message:
            _lines(layout, settings.message)
        image = bpy.data.images.get(settings.preview_image) if settings.preview_image else None
        if image is not None:
            try:
                layout.template_icon(icon_value=layout.icon(image), scale=8.0)
            except (TypeError, RuntimeError):
                pass
        row = layout.row(align=True)
        if status in {"CANCELLED", "FAILED"} and settings.job_dir:
            op = row.operator("ins.stylize_scene", text="Resume", icon="PLAY")
            op.resume = True
        if status == "FINISHED" or (settings.job_dir and status == "IDLE"):
            row.operator("ins.import_result", icon="IMPORT")
        if settings.job_dir:
            op = row.operator("wm.path_open", text="", icon="FILE_FOLDER")
            op.filepath = settings.job_dir
        _draw_before_after(layout, context)


def _draw_before_after(layout, context) -> None:
    """Show: Stylized | Originals, for the INS result in focus (the active one, else the Placement)."""
    from .originals import result_in_focus, showing_stylized

    result = result_in_focus(context)
    if result is None:
        return
    row = layout.row(align=True)
    row.label(text="Show")
    stylized = showing_stylized(result)
    row.operator("ins.show_result", text="Stylized", depress=stylized).stylized = True
    row.operator("ins.show_result", text="Originals", depress=not stylized).stylized = False


class VIEW3D_PT_ins_render(_INSPanel, Panel):
    bl_idname = "VIEW3D_PT_ins_render"
    bl_label = "Neural Render"
    bl_parent_id = "VIEW3D_PT_ins"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        self.layout.prop(context.scene.render, "engine", text="Engine")
        _draw_neural_render(self.layout, context)


def _draw_neural_render(layout, context) -> None:
    """The INS engine's own settings: which job, samples, the style mix."""
    settings = _settings(context)
    scene = context.scene
    layout.prop(settings, "render_job_dir", text="Job")
    if not settings.render_job_dir and settings.job_dir:
        layout.label(text="Empty: the latest job", icon="INFO")
    layout.prop(settings, "field_object", text="Placement")
    placed = settings.field_object
    if placed is not None and scene.objects.get(placed.name) != placed:
        _lines(layout, "Not in this scene: its field is not drawn.", icon="ERROR")
    elif placed is not None and placed.hide_render:
        _lines(layout, "Hidden from renders: F12 leaves its field out.", icon="HIDE_ON")
    column = layout.column(align=True)
    column.prop(settings, "render_samples", text="Render Samples")
    column.prop(settings, "viewport_samples", text="Viewport Samples")
    if scene.view_settings.view_transform != "Standard":
        _lines(layout, "For exact colours, set Color Management > View Transform to Standard.", icon="INFO")
    layout.label(text="Style Weights")
    for item in settings.styles:
        layout.prop(item, "weight", text=item.display_name(), slider=True)
    note = render_client.style_weights_note(scene)
    if note:
        _lines(layout, note, icon="INFO")


class _INSPropertiesPanel:
    """A panel of the Properties editor shown while the INS engine is the scene's."""

    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    COMPAT_ENGINES = {"INS"}

    @classmethod
    def poll(cls, context):
        return context.engine in cls.COMPAT_ENGINES


class RENDER_PT_ins(_INSPropertiesPanel, Panel):
    bl_idname = "RENDER_PT_ins"
    bl_label = "INS"
    bl_context = "render"

    @classmethod
    def poll(cls, context):
        return super().poll(context) and _settings(context) is not None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split, layout.use_property_decorate = True, False  # labels at the Properties editor's width
        _draw_neural_render(layout, context)  # (the engine is chosen just above, in Render Engine)


class RENDER_PT_ins_motion_blur(_INSPropertiesPanel, Panel):
    """Render > Motion Blur for the INS engine (Cycles' and EEVEE's panels show for their engines
    only): the shutter around each frame, which a moving camera smears the frame over."""

    bl_idname = "RENDER_PT_ins_motion_blur"
    bl_label = "Motion Blur"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(context.scene.render, "use_motion_blur", text="")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        render = context.scene.render
        layout.active = render.use_motion_blur
        layout.prop(render, "motion_blur_position", text="Position")
        layout.prop(render, "motion_blur_shutter")


class VIEWLAYER_PT_ins_passes_data(_INSPropertiesPanel, Panel):
    """View Layer > Passes > Data for the INS engine: the passes it fills."""

    bl_idname = "VIEWLAYER_PT_ins_passes_data"
    bl_label = "Data"
    bl_context = "view_layer"
    bl_parent_id = "VIEWLAYER_PT_layer_passes"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        column = layout.column()
        column.prop(context.view_layer, "use_pass_combined")
        column.prop(context.view_layer, "use_pass_z")
        column.prop(context.view_layer, "use_pass_mist")
        column.prop(context.view_layer, "use_pass_normal")


class WORLD_PT_ins_mist(_INSPropertiesPanel, Panel):
    """World > Mist Pass for the INS engine (Cycles' and EEVEE's panels show for their engines only):
    where the Mist pass starts, over what distance it fades in, and how."""

    bl_idname = "WORLD_PT_ins_mist"
    bl_label = "Mist Pass"
    bl_context = "world"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return (super().poll(context) and context.world is not None
                and any(layer.use_pass_mist for layer in context.scene.view_layers))

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        column = layout.column(align=True)
        mist = context.world.mist_settings
        column.prop(mist, "start")
        column.prop(mist, "depth")
        layout.prop(mist, "falloff")


CLASSES = (INS_UL_styles, VIEW3D_PT_ins, VIEW3D_PT_ins_capture, VIEW3D_PT_ins_job, VIEW3D_PT_ins_render, RENDER_PT_ins,
           RENDER_PT_ins_motion_blur, VIEWLAYER_PT_ins_passes_data, WORLD_PT_ins_mist)


register, unregister = class_registrar(CLASSES)
