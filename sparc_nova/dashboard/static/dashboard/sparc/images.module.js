/*
 * sparc-nova: a "Privacy Scrub" column on Project > Compute > Images.
 *
 * Added through Horizon's resource type registry (no change to Horizon):
 * the column reads the records sparc-nova's compute driver leaves on the
 * snapshots it scrubbed (image properties sparc_scrubbed and
 * sparc_scrub_summary). The image detail view already lists them with
 * the other custom properties.
 */
(function () {
  'use strict';

  angular
    .module('horizon.dashboard.sparc.images', ['horizon.app.core.images'])
    .run(addScrubColumn);

  addScrubColumn.$inject = [
    'horizon.framework.conf.resource-type-registry.service',
    'horizon.app.core.images.resourceType'
  ];

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
  }

  function scrubTemplate() {
    return '<span ng-if="item.properties.sparc_scrubbed === \'true\'" ' +
      'class="label label-success sparc-scrubbed" ' +
      'title="{$ item.properties.sparc_scrub_summary $}">' +
      '<span class="fa fa-user-secret" aria-hidden="true"></span> ' +
      escapeHtml(gettext('Scrubbed')) + '</span>' +
      '<span ng-if="item.properties.sparc_scrubbed === \'false\'" ' +
      'class="label label-danger sparc-unscrubbed" ' +
      'title="{$ item.properties.sparc_scrub_summary $}">' +
      escapeHtml(gettext('Not scrubbed')) + '</span>' +
      '<span ng-if="!item.properties.sparc_scrubbed">-</span>';
  }

  function addScrubColumn(registry, imageResourceType) {
    registry.getResourceType(imageResourceType).tableColumns.append({
      id: 'sparc_scrubbed',
      title: gettext('Privacy Scrub'),
      priority: 1,
      sortable: false,
      template: scrubTemplate()
    });
  }
})();
