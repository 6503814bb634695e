"""The supplier's workspace pages: dataset editor, datasheet, schema, guidelines, offers, review and publish.

Each view checks access with ``visibility.access_dataset`` (a dataset the user does not supply is
a 404, whoever asks), turns a form into a call to a ``marketplace.workspace`` service, and shows
the service's refusals next to the fields they are about.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from governance.models import GuidelineVersion
from marketplace.workspace import diff as workspace_diff
from marketplace.workspace import editing as workspace_editing
from marketplace.workspace import lifecycle as workspace_lifecycle
from marketplace.workspace import schema as workspace_schema

from .. import visibility
from ..errors import DomainError
from ..formats import model as fmt
from ..models import (
    DATASHEET_SECTIONS,
    AttributeSpec,
    DatasetVersion,
    Datasheet,
    Delivery,
    Item,
    Notification,
    Offer,
)
from ..notifications import service as notifications

# --------------------------------------------------------------------------- forms


def _words(text: str) -> list[str]:
    return [w.strip() for w in re.split(r"[,\n]", text or "") if w.strip()]


class DatasetForm(forms.Form):
    """What the catalogue shows about a dataset."""

    title = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=100,
        required=False,
        help_text="The dataset's address, set once: /datasets/<slug>/. Blank: made from the title.",
    )
    summary = forms.CharField(max_length=400, help_text="One or two sentences for the catalogue card.")
    domain = forms.CharField(max_length=64, help_text="e.g. autonomous-driving, retail, infrastructure")
    task_types = forms.CharField(required=False, help_text="Comma-separated, e.g. detection, segmentation")
    tags = forms.CharField(required=False, help_text="Comma-separated")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    supplier = forms.ChoiceField(required=False, label="Supplied by")

    def __init__(self, *args, orgs=(), editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["slug"], self.fields["supplier"]
        elif len(orgs) > 1:
            self.fields["supplier"].choices = [(o.slug, o.name) for o in orgs]
            self.fields["supplier"].required = True
        else:
            del self.fields["supplier"]

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        data["task_types"] = _words(data.get("task_types", ""))
        data["tags"] = _words(data.get("tags", ""))
        data.pop("supplier", None)
        return data


class DatasheetForm(forms.Form):
    """Every question of *Datasheets for Datasets*, grouped by section in the template."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        required = set(workspace_editing.REQUIRED_DATASHEET_FIELDS.values())
        for name, question in workspace_editing.DATASHEET_FIELDS.items():
            self.fields[name] = forms.CharField(
                label=question,
                required=False,
                widget=forms.Textarea(attrs={"rows": 3}),
                help_text="Needed to publish." if name in required else "",
            )

    def sections(self):
        return [
            {"key": key, "title": title, "fields": [self[name] for name, _ in questions]}
            for key, (title, questions) in DATASHEET_SECTIONS.items()
        ]


BONE_RE = re.compile(r"^\s*(\d+)\s*[-–:]\s*(\d+)\s*$")


class CategoryForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    supercategory = forms.CharField(max_length=120, required=False)
    source_id = forms.IntegerField(required=False, min_value=0, label="Id")
    geometry_types = forms.MultipleChoiceField(
        choices=[(g, g.replace("_", " ")) for g in fmt.GEOMETRY_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Geometry kinds",
    )
    keypoint_names = forms.CharField(
        required=False, help_text="Comma-separated, in order: nose, left_eye, ...", label="Keypoints"
    )
    skeleton = forms.CharField(
        required=False, help_text="Bones between keypoint numbers, from 1: 1-2, 1-3", label="Skeleton"
    )
    color = forms.CharField(required=False, max_length=7, widget=forms.TextInput(attrs={"type": "color"}))

    def clean_skeleton(self):
        bones = []
        for token in _words(self.cleaned_data.get("skeleton", "")):
            match = BONE_RE.match(token)
            if not match:
                raise forms.ValidationError(f"“{token}” is not a bone; write bones as 1-2, 1-3.")
            bones.append([int(match.group(1)), int(match.group(2))])
        return bones

    def as_service(self) -> dict:
        d = self.cleaned_data
        return {
            "name": d["name"],
            "supercategory": d.get("supercategory", ""),
            "source_id": d.get("source_id"),
            "geometry_types": list(d.get("geometry_types") or []),
            "keypoint_names": _words(d.get("keypoint_names", "")),
            "skeleton": d.get("skeleton") or [],
            "color": d.get("color") or "",
        }


class AttributeForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    type = forms.ChoiceField(choices=AttributeSpec.Type.choices)
    scope = forms.ChoiceField(choices=AttributeSpec.Scope.choices)
    allowed_values = forms.CharField(required=False, help_text="Comma-separated", label="Values")
    categories = forms.CharField(required=False, help_text="Comma-separated; blank: all", label="Classes")
    describes_person = forms.BooleanField(
        required=False, label="Describes a person", help_text="Feeds the demographic balance"
    )

    def as_service(self) -> dict:
        d = self.cleaned_data
        return {
            "name": d["name"],
            "type": d["type"],
            "scope": d["scope"],
            "allowed_values": _words(d.get("allowed_values", "")),
            "categories": _words(d.get("categories", "")),
            "describes_person": bool(d.get("describes_person")),
        }


CategoryFormSet = forms.formset_factory(CategoryForm, extra=2, can_delete=True)
AttributeFormSet = forms.formset_factory(AttributeForm, extra=2, can_delete=True)


class GuidelineForm(forms.Form):
    title = forms.CharField(max_length=200, help_text="A new title starts a new guideline.")
    tag = forms.CharField(max_length=32, help_text="e.g. v1.2")
    effective_date = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Blank: today"
    )
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}), label="Text")
    document = forms.FileField(
        required=False,
        label="or a PDF",
        widget=forms.ClearableFileInput(attrs={"accept": ".pdf,application/pdf"}),
    )
    change_notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self):
        data = super().clean()
        if not data.get("text", "").strip() and not data.get("document"):
            raise forms.ValidationError("Paste the guideline's text or upload its PDF.")
        return data


class OfferForm(forms.Form):
    license = forms.ModelChoiceField(queryset=None, empty_label=None)
    access_mode = forms.ChoiceField(choices=Offer.AccessMode.choices, label="Access")
    price = forms.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"), initial=Decimal("0"))
    currency = forms.CharField(max_length=3, initial="EUR")
    description = forms.CharField(max_length=300, required=False)

    def __init__(self, *args, licenses, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["license"].queryset = licenses


class LicenseForm(forms.Form):
    name = forms.CharField(max_length=200, label="License name")
    url = forms.URLField(required=False, label="Link to the terms", assume_scheme="https")
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}), label="Terms")
    commercial_use = forms.BooleanField(required=False)
    ai_training = forms.BooleanField(required=False, label="AI training")
    derivatives = forms.BooleanField(required=False)
    redistribution = forms.BooleanField(required=False)
    attribution_required = forms.BooleanField(required=False, initial=True)
    duration_days = forms.IntegerField(required=False, min_value=1, help_text="Blank: perpetual")
    seats = forms.IntegerField(required=False, min_value=1, help_text="Blank: unlimited")


def _apply_errors(form: forms.Form, error: DomainError, *, prefix: str = "") -> None:
    """Put a service's field errors on the form's fields; anything else goes on top of the form."""
    fields = error.extra.get("fields") if isinstance(error.extra, dict) else None
    if not fields:
        form.add_error(None, error.detail)
        return
    for path, msgs in fields.items():
        name = path[len(prefix) :] if prefix and path.startswith(prefix) else path
        for message in msgs:
            form.add_error(name if name in form.fields else None, message)


# --------------------------------------------------------------------------- helpers


def _context(dataset, **extra) -> dict:
    latest = workspace_editing.latest_version(dataset)
    draft = latest if latest is not None and latest.status == DatasetVersion.Status.DRAFT else None
    # The datasheet and schema tabs open the draft when there is one, else the latest release.
    return {"dataset": dataset, "draft": draft, "nav_number": latest.number if latest else None, **extra}


def _version(dataset, number: int) -> DatasetVersion:
    try:
        return dataset.versions.get(number=number)
    except DatasetVersion.DoesNotExist:
        raise Http404("No such version") from None


def _delivery_link(delivery: Delivery) -> str:
    try:
        return reverse("supplier-delivery", kwargs={"pk": delivery.pk})
    except NoReverseMatch:  # the delivery pages are not in this build: the API answers the same
        return f"/api/v1/deliveries/{delivery.pk}/"


def _upload_link(dataset) -> str:
    try:
        return f"{reverse('supplier-deliveries')}?dataset={dataset.slug}"
    except NoReverseMatch:
        return ""


# --------------------------------------------------------------------------- pages


@login_required
def home(request):
    """The supplier's datasets, and a form to start a new one."""
    orgs = workspace_editing.supplier_orgs(request.user)
    if not orgs:
        raise Http404("You supply no dataset")
    form = DatasetForm(request.POST or None, orgs=orgs)
    if request.method == "POST" and form.is_valid():
        org = next((o for o in orgs if o.slug == form.cleaned_data.get("supplier")), None)
        try:
            dataset = workspace_editing.create_dataset(
                user=request.user, organization=org, **form.service_fields()
            )
        except DomainError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, f"“{dataset.title}” is created. Write its datasheet next.")
            return redirect("workspace-datasheet", slug=dataset.slug, number=1)
    datasets = (
        visibility.supplied_datasets(request.user)
        .select_related("supplier")
        .annotate(
            n_versions=Count("versions"),
            n_released=Count("versions", filter=~Q(versions__status=DatasetVersion.Status.DRAFT)),
        )
        .order_by("title")
    )
    rows = []
    for d in datasets:
        latest = workspace_editing.latest_version(d)
        sheet = Datasheet.objects.filter(version=latest).first() if latest else None
        rows.append({"dataset": d, "latest": latest, "completeness": sheet.completeness() if sheet else 0})
    return render(request, "marketplace/workspace/home.html", {"form": form, "rows": rows})


@login_required
def dataset_editor(request, slug):
    """A dataset's overview: catalogue fields, versions, offers and what the draft still needs."""
    dataset = visibility.access_dataset(request.user, slug)
    form = DatasetForm(
        request.POST or None,
        editing=True,
        initial={
            "title": dataset.title,
            "summary": dataset.summary,
            "domain": dataset.domain,
            "task_types": ", ".join(dataset.task_types),
            "tags": ", ".join(dataset.tags),
            "description": dataset.description,
        },
    )
    if request.method == "POST" and form.is_valid():
        try:
            workspace_editing.update_dataset(dataset=dataset, **form.service_fields())
        except DomainError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, "Saved.")
            return redirect("workspace-dataset", slug=dataset.slug)
    draft = workspace_editing.current_draft(dataset)
    return render(
        request,
        "marketplace/workspace/dataset.html",
        _context(
            dataset,
            form=form,
            versions=dataset.versions.order_by("-number"),
            missing=workspace_lifecycle.check_publishable(draft) if draft else [],
            offers=dataset.offers.select_related("license").order_by("-active", "price"),
            upload_url=_upload_link(dataset),
            tab="overview",
        ),
    )


@login_required
def datasheet(request, slug, number):
    """The datasheet of one version, section by section; read-only once the version is released."""
    dataset = visibility.access_dataset(request.user, slug)
    version = _version(dataset, number)
    sheet = Datasheet.objects.filter(version=version).first() or Datasheet(version=version)
    initial = {name: getattr(sheet, name) for name in workspace_editing.DATASHEET_FIELDS}
    form = DatasheetForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            sheet = workspace_editing.update_datasheet(version=version, answers=form.cleaned_data)
        except DomainError as error:
            _apply_errors(form, error)
        else:
            gaps = workspace_editing.datasheet_gaps(version)
            messages.success(
                request,
                f"Datasheet saved: {round(sheet.completeness() * 100)}% answered"
                + (
                    f"; {len(gaps)} required answer{'s' if len(gaps) != 1 else ''} still missing."
                    if gaps
                    else "."
                ),
            )
            return redirect("workspace-datasheet", slug=dataset.slug, number=version.number)
    return render(
        request,
        "marketplace/workspace/datasheet.html",
        _context(
            dataset,
            version=version,
            form=form,
            sheet=sheet,
            gaps=workspace_editing.datasheet_gaps(version),
            editable=version.status == DatasetVersion.Status.DRAFT,
            tab="datasheet",
        ),
    )


@login_required
def schema(request, slug, number):
    """The annotation schema of one version: categories with their geometry kinds and keypoints, attributes."""
    dataset = visibility.access_dataset(request.user, slug)
    version = _version(dataset, number)
    editable = version.status == DatasetVersion.Status.DRAFT
    current = workspace_schema.schema_as_dict(version)
    cat_initial = [
        {
            **c,
            "keypoint_names": ", ".join(c["keypoint_names"]),
            "skeleton": ", ".join(f"{a}-{b}" for a, b in c["skeleton"]),
        }
        for c in current["categories"]
    ]
    attr_initial = [
        {
            **a,
            "allowed_values": ", ".join(map(str, a["allowed_values"])),
            "categories": ", ".join(a["categories"]),
        }
        for a in current["attributes"]
    ]
    post = request.POST if request.method == "POST" and editable else None
    cats = CategoryFormSet(post, initial=cat_initial, prefix="cat")
    attrs = AttributeFormSet(post, initial=attr_initial, prefix="attr")
    errors: list[str] = []
    if post is not None and cats.is_valid() and attrs.is_valid():
        kept_cats = [
            (i, f)
            for i, f in enumerate(cats.forms)
            if f.cleaned_data.get("name") and not f.cleaned_data.get("DELETE")
        ]
        kept_attrs = [
            (i, f)
            for i, f in enumerate(attrs.forms)
            if f.cleaned_data.get("name") and not f.cleaned_data.get("DELETE")
        ]
        try:
            workspace_schema.set_schema(
                version=version,
                categories=[f.as_service() for _, f in kept_cats],
                attributes=[f.as_service() for _, f in kept_attrs],
            )
        except DomainError as error:
            for path, msgs in (error.extra.get("fields") or {"": [error.detail]}).items():
                match = re.match(r"^(categories|attributes)\[(\d+)\]\.(\w+)$", path)
                if match:
                    group = kept_cats if match.group(1) == "categories" else kept_attrs
                    form = group[int(match.group(2))][1]
                    field = match.group(3)
                    for m in msgs:
                        form.add_error(field if field in form.fields else None, m)
                else:
                    errors.extend(msgs)
        else:
            messages.success(request, "Schema saved.")
            return redirect("workspace-schema", slug=dataset.slug, number=version.number)
    label_counts = dict(
        version.labels.filter(is_final=True).values_list("category__name").annotate(n=Count("id")).order_by()
    )
    return render(
        request,
        "marketplace/workspace/schema.html",
        _context(
            dataset,
            version=version,
            cats=cats,
            attrs=attrs,
            errors=errors,
            editable=editable,
            label_counts=label_counts,
            tab="schema",
        ),
    )


@login_required
def guidelines(request, slug):
    """The dataset's guideline versions, and a form to add one from text or a PDF."""
    dataset = visibility.access_dataset(request.user, slug)
    form = GuidelineForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            gv = workspace_editing.add_guideline_version(
                dataset=dataset,
                title=d["title"],
                tag=d["tag"],
                effective_date=d.get("effective_date"),
                text=d.get("text", ""),
                document=d.get("document"),
                change_notes=d.get("change_notes", ""),
            )
        except DomainError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, f"{gv.guideline.title} {gv.tag} added (SHA-256 {gv.sha256[:12]}…).")
            return redirect("workspace-guidelines", slug=dataset.slug)
    versions = (
        GuidelineVersion.objects.filter(guideline__dataset=dataset)
        .select_related("guideline")
        .annotate(n_labels=Count("labels"))
        .order_by("guideline__title", "-effective_date", "-tag")
    )
    titles = sorted({v.guideline.title for v in versions})
    return render(
        request,
        "marketplace/workspace/guidelines.html",
        _context(dataset, form=form, guideline_versions=versions, titles=titles, tab="guidelines"),
    )


@login_required
def offers(request, slug):
    """The dataset's offers; add one, switch one off or on, write custom license terms."""
    dataset = visibility.access_dataset(request.user, slug)
    licenses = workspace_editing.licenses_for(dataset.supplier).order_by("owner_id", "name")
    action = request.POST.get("action") if request.method == "POST" else None
    offer_form = OfferForm(request.POST if action == "offer" else None, licenses=licenses)
    license_form = LicenseForm(request.POST if action == "license" else None)
    if action == "offer" and offer_form.is_valid():
        try:
            workspace_editing.set_offer(dataset=dataset, **offer_form.cleaned_data)
        except DomainError as error:
            _apply_errors(offer_form, error)
        else:
            messages.success(request, "Offer added.")
            return redirect("workspace-offers", slug=dataset.slug)
    elif action == "license" and license_form.is_valid():
        try:
            lic = workspace_editing.create_license(organization=dataset.supplier, **license_form.cleaned_data)
        except DomainError as error:
            _apply_errors(license_form, error)
        else:
            messages.success(request, f"License “{lic.name}” created; offer the dataset under it below.")
            return redirect("workspace-offers", slug=dataset.slug)
    elif action in ("activate", "deactivate"):
        offer = dataset.offers.filter(pk=request.POST.get("offer")).select_related("license").first()
        if offer is None:
            raise Http404("No such offer")
        try:
            workspace_editing.set_offer(
                dataset=dataset,
                offer=offer,
                license=offer.license,
                access_mode=offer.access_mode,
                price=offer.price,
                currency=offer.currency,
                description=offer.description,
                active=action == "activate",
            )
        except DomainError as error:
            messages.error(request, error.detail)
        else:
            messages.success(request, f"Offer {'activated' if action == 'activate' else 'withdrawn'}.")
        return redirect("workspace-offers", slug=dataset.slug)
    return render(
        request,
        "marketplace/workspace/offers.html",
        _context(
            dataset,
            offers=dataset.offers.select_related("license").order_by("-active", "price"),
            offer_form=offer_form,
            license_form=license_form,
            tab="offers",
        ),
    )


@login_required
def version_review(request, slug, number):
    """A version before (or after) release: counts, deliveries, the diff, samples, and what it needs."""
    dataset = visibility.access_dataset(request.user, slug)
    version = _version(dataset, number)
    base = (
        dataset.versions.filter(number__lt=version.number)
        .exclude(status=DatasetVersion.Status.DRAFT)
        .order_by("-number")
        .first()
    )
    samples = list(
        Item.objects.filter(version=version)
        .annotate(n_labels=Count("labels", filter=Q(labels__is_final=True)))
        .order_by("-pinned", "key")[:8]
    )
    try:
        preview = reverse(
            "api-sample-preview",
            kwargs={"dataset_slug": dataset.slug, "number": version.number, "item_id": 0},
        ).replace("/0/", "/{id}/")
    except NoReverseMatch:
        preview = ""
    for item in samples:
        item.preview_url = preview.replace("{id}", str(item.pk)) if preview else ""
    deliveries = list(Delivery.objects.filter(version=version).order_by("-created_at"))
    for d in deliveries:
        d.link = _delivery_link(d)
    return render(
        request,
        "marketplace/workspace/version.html",
        _context(
            dataset,
            version=version,
            counts=workspace_lifecycle.version_counts(version),
            missing=workspace_lifecycle.check_publishable(version)
            if version.status == DatasetVersion.Status.DRAFT
            else [],
            base=base,
            diff=workspace_diff.cached_diff(old=base, new=version) if base else None,
            deliveries=deliveries,
            samples=samples,
            upload_url=_upload_link(dataset),
            guideline_versions=version.guideline_versions.select_related("guideline"),
            tab="versions",
        ),
    )


@login_required
@require_POST
def start_draft(request, slug):
    dataset = visibility.access_dataset(request.user, slug)
    version = workspace_lifecycle.start_draft(dataset=dataset)
    messages.success(
        request,
        f"Draft version {version.number} is ready: edit its datasheet and schema, then upload a delivery.",
    )
    return redirect("workspace-version", slug=dataset.slug, number=version.number)


@login_required
@require_POST
def publish(request, slug, number):
    dataset = visibility.access_dataset(request.user, slug)
    version = _version(dataset, number)
    try:
        workspace_lifecycle.publish_draft(
            version=version, release_notes=request.POST.get("release_notes", ""), user=request.user
        )
    except DomainError as error:
        missing = error.extra.get("missing") if isinstance(error.extra, dict) else None
        messages.error(request, error.detail + (" " + " ".join(missing) if missing else ""))
        return redirect("workspace-version", slug=dataset.slug, number=version.number)
    messages.success(request, f"Version {version.number} is published. Entitled buyers have been told.")
    return redirect(f"{reverse('dataset-detail', kwargs={'slug': dataset.slug})}#changelog")


@login_required
@require_POST
def delete_draft(request, slug, number):
    dataset = visibility.access_dataset(request.user, slug)
    version = _version(dataset, number)
    try:
        workspace_lifecycle.delete_draft(version=version)
    except DomainError as error:
        messages.error(request, error.detail)
        return redirect("workspace-version", slug=dataset.slug, number=version.number)
    messages.success(request, f"Draft version {number} is deleted.")
    return redirect("workspace-dataset", slug=dataset.slug)


@login_required
@require_POST
def deprecate(request, slug, number):
    dataset = visibility.access_dataset(request.user, slug)
    version = _version(dataset, number)
    try:
        workspace_lifecycle.deprecate_version(
            version=version, reason=request.POST.get("reason", ""), user=request.user
        )
    except DomainError as error:
        fields = (error.extra or {}).get("fields") or {}
        messages.error(request, " ".join(m for msgs in fields.values() for m in msgs) or error.detail)
    else:
        messages.success(request, f"Version {version.number} is deprecated; buyers see your reason.")
    return redirect("workspace-version", slug=dataset.slug, number=version.number)


@login_required
def notification_list(request):
    """The signed-in user's notifications; POST marks them read."""
    if request.method == "POST":
        notifications.mark_read(user=request.user)
        return redirect("notifications")
    items = Notification.objects.for_user(request.user).select_related("dataset")[:100]
    return render(request, "marketplace/workspace/notifications.html", {"items": items})
