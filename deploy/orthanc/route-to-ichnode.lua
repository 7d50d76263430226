-- Orthanc auto-routing to ichnode (AI triage, not for diagnostic use).
-- Forwards every CT image Orthanc stores to the DICOM modality "ichnode" (declared in Orthanc's
-- DicomModalities). ichnode's results (SEG, SR, secondary capture) come back from AE ICHNODE and
-- are never CT Image Storage, so they are not routed back: no loop.

ICHNODE_MODALITY = 'ichnode'   -- the key in DicomModalities
ICHNODE_AET = 'ICHNODE'        -- the calling AE title ichnode sends its results with

CT_SOP_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.2'] = true,    -- CT Image Storage
  ['1.2.840.10008.5.1.4.1.1.2.1'] = true,  -- Enhanced CT Image Storage
}

function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin ~= nil and origin['RemoteAet'] == ICHNODE_AET then
    return  -- ichnode's own results
  end
  if tags['Modality'] ~= 'CT' or not CT_SOP_CLASSES[tags['SOPClassUID']] then
    return
  end
  SendToModality(instanceId, ICHNODE_MODALITY)
end
