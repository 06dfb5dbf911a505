/*
 * sparc-nova: a "Privacy scrub" column on Project > Compute > Images.
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
    .constant('horizon.dashboard.sparc.images.template',
      '<span ng-if="item.properties.sparc_scrubbed === \'true\'" ' +
      'class="label label-success sparc-scrubbed" ' +
      'title="{$ item.properties.sparc_scrub_summary $}">' +
      '<span class="fa fa-user-secret" aria-hidden="true"></span> ' +
      '{$ \'Scrubbed\' | translate $}</span>' +
      '<span ng-if="item.properties.sparc_scrubbed === \'false\'" ' +
      'class="label label-danger sparc-unscrubbed" ' +
      'title="{$ item.properties.sparc_scrub_summary $}">' +
      '{$ \'Not scrubbed\' | translate $}</span>' +
      '<span ng-if="!item.properties.sparc_scrubbed">-</span>')
    .run(addScrubColumn);

  addScrubColumn.$inject = [
    'horizon.framework.conf.resource-type-registry.service',
    'horizon.app.core.images.resourceType',
    'horizon.dashboard.sparc.images.template'
  ];

  function addScrubColumn(registry, imageResourceType, template) {
    registry.getResourceType(imageResourceType).tableColumns.append({
      id: 'sparc_scrubbed',
      title: gettext('Privacy Scrub'),
      priority: 1,
      sortable: false,
      template: template
    });
  }
})();
